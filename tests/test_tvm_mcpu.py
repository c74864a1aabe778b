"""Which CPU the tvm target compiles for, on recorded samples of the two machines where LLVM's
host detection and the CPU flags disagree (no TVM needed)."""

from __future__ import annotations

import pytest

from targets.tvm_schedules.mcpu import choose_mcpu, mcpu_from_flags

# /proc/cpuinfo flags of an AMD EPYC (Zen 4) KVM guest: AVX-512 with VNNI and BF16, no AMX.
_ZEN4_TEXT = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
    "sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology "
    "nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 "
    "x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm "
    "cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext cpuid_fault vmmcall "
    "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap "
    "avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves "
    "avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq "
    "avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm"
)
# /proc/cpuinfo flags of an Intel Xeon (Sapphire Rapids) KVM guest, which LLVM names rocketlake.
_SAPPHIRE_RAPIDS_TEXT = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
    "sse2 ss syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon rep_good nopl xtopology "
    "nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pdcm pcid sse4_1 sse4_2 x2apic "
    "movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm "
    "3dnowprefetch invpcid_single ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase tsc_adjust bmi1 hle "
    "avx2 smep bmi2 erms invpcid rtm avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb "
    "avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 "
    "wbnoinvd arat avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni "
    "avx512_bitalg tme avx512_vpopcntdq rdpid cldemote movdiri movdir64b md_clear serialize "
    "tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities"
)
ZEN4_FLAGS = set(_ZEN4_TEXT.split())
SAPPHIRE_RAPIDS_FLAGS = set(_SAPPHIRE_RAPIDS_TEXT.split())


def test_zen4_compiles_for_llvms_znver4_not_the_flags_cascadelake() -> None:
    chosen = choose_mcpu("znver4", ZEN4_FLAGS, "amd")
    assert (chosen.mcpu, chosen.source) == ("znver4", "llvm-host")
    assert "the flags alone give 'cascadelake'" in chosen.why
    assert choose_mcpu("znver4", ZEN4_FLAGS, "AuthenticAMD").mcpu == "znver4"


def test_sapphire_rapids_misnamed_rocketlake_keeps_the_flags_name() -> None:
    chosen = choose_mcpu("rocketlake", SAPPHIRE_RAPIDS_FLAGS, "intel")
    assert (chosen.mcpu, chosen.source) == ("sapphirerapids", "cpu-flags")
    assert chosen.why == (
        "the newest generation the CPU flags prove: LLVM's host CPU 'rocketlake' lacks "
        "amx_bf16, amx_int8, amx_tile, avx512_bf16, avx512_fp16"
    )
    assert choose_mcpu("sapphirerapids", SAPPHIRE_RAPIDS_FLAGS, "intel").source == "llvm-host"


@pytest.mark.parametrize(
    ("llvm_cpu", "flags", "vendor", "reason"),
    [
        ("generic", ZEN4_FLAGS, "amd", "LLVM's host CPU 'generic' is not a CPU this toolkit knows"),
        (
            "znver4",
            ZEN4_FLAGS,
            "intel",
            "LLVM's host CPU 'znver4' is an amd CPU, the host is intel",
        ),
        # a guest whose hypervisor hides AVX-512: code for znver4 could fault
        (
            "znver4",
            ZEN4_FLAGS - {"avx512f", "avx512_vnni", "avx512_bf16"},
            "amd",
            "LLVM's host CPU 'znver4' has avx512_bf16, avx512_vnni, avx512f that the host lacks",
        ),
    ],
)
def test_llvm_host_cpu_that_does_not_match_the_flags_falls_back_to_them(
    llvm_cpu: str, flags: set[str], vendor: str, reason: str
) -> None:
    chosen = choose_mcpu(llvm_cpu, flags, vendor)
    assert chosen.source == "cpu-flags"
    assert chosen.mcpu == mcpu_from_flags(flags)
    assert chosen.why.endswith(reason)


@pytest.mark.parametrize(
    ("flags", "mcpu"),
    [
        (SAPPHIRE_RAPIDS_FLAGS, "sapphirerapids"),
        (ZEN4_FLAGS, "cascadelake"),
        ({"avx2", "fma", "avx512f", "avx512_vnni"}, "cascadelake"),
        ({"avx2", "fma", "avx512f"}, "skylake-avx512"),
        ({"avx2", "fma"}, "haswell"),
        ({"amx_tile"}, "x86-64"),
        (set(), "x86-64"),
    ],
)
def test_mcpu_from_cpu_flags(flags: set[str], mcpu: str) -> None:
    assert mcpu_from_flags(flags) == mcpu
