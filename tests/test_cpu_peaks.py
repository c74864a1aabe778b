"""ISA ceilings from /proc/cpuinfo text and a clock: the core's real FMA width (Zen 4's AVX-512
runs on 256-bit datapaths, Sapphire Rapids has two 512-bit units), AMX and VNNI for int8 and
bf16, a named fallback for unknown cores, and the clock measured with a dependent chain."""

from __future__ import annotations

import pytest

from targets.hardware.clock import CYCLES_PER_STEP, dependent_chain, measure_clock
from targets.hardware.cpu_peaks import identify_core, isa_peaks
from targets.hardware.host import HostMeasurement, HostProfile, parse_cpuinfo

ZEN4_FLAGS = (
    "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw "
    "avx512vl avx512_bf16 avx512vbmi avx512_vbmi2 avx512_vnni avx512_bitalg"
)
SPR_FLAGS = (
    "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw "
    "avx512vl avx512_bf16 avx512_vnni avx512_fp16 avx_vnni amx_bf16 amx_tile amx_int8"
)


def _cpuinfo(vendor: str, family: int, model: int, name: str, mhz: str, flags: str) -> str:
    blocks = [
        f"processor\t: {core}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {name}\ncpu MHz\t\t: {mhz}\nphysical id\t: 0\ncore id\t\t: {core}\n"
        f"cpu cores\t: 2\nflags\t\t: {flags}\n\n"
        for core in range(2)
    ]
    return "".join(blocks)


ZEN4 = parse_cpuinfo(_cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC", "2596.146", ZEN4_FLAGS))
SPR = parse_cpuinfo(
    _cpuinfo("GenuineIntel", 6, 143, "Intel(R) Xeon(R) Platinum 8488C", "2400.000", SPR_FLAGS)
)


def test_zen4_avx512_is_counted_at_its_256_bit_datapath_width() -> None:
    core = identify_core(ZEN4)
    assert (core.name, core.fma_pipes, core.fma_bits, core.known) == ("AMD Zen 4", 2, 256, True)
    peaks = isa_peaks(ZEN4, 3.7, "measured")
    assert {d: p.ops_per_cycle_per_core for d, p in peaks.items()} == {
        "fp32": 32,  # 2 pipes x 8 FP32 lanes x 2
        "fp16": 32,  # no fp16 unit: converted to FP32
        "bf16": 64,  # avx512_bf16: 2 MACs per FP32 lane
        "int8": 128,  # avx512_vnni: 4 MACs per FP32 lane
    }
    assert peaks["fp32"].gflops == pytest.approx(2 * 3.7 * 32)
    assert peaks["fp32"].source == (
        "ISA: 2 cores x 3.70 GHz (measured) x 32 FLOP/cycle (FP32 FMA; AMD Zen 4: "
        "2 FMA pipes x 256 bit; AVX-512 double-pumped)"
    )
    assert "avx512_vnni" in peaks["int8"].source and "OP/cycle" in peaks["int8"].source


def test_amx_int8_ceiling_on_two_sapphire_rapids_cores_is_about_11_tops() -> None:
    """The int8 ceiling was FP32 x 4; AMX does 1024 int8 MACs per cycle per core."""
    core = identify_core(SPR)
    assert (core.name, core.fma_pipes, core.fma_bits) == ("Intel Xeon Sapphire Rapids", 2, 512)
    peaks = isa_peaks(SPR, 2.7, "measured")
    assert peaks["fp32"].ops_per_cycle_per_core == 64  # 2 x 512-bit FMA units
    assert peaks["int8"].ops_per_cycle_per_core == 2048
    assert peaks["int8"].gflops == pytest.approx(11_059.2)  # 2 cores x 2.7 GHz x 2048
    assert "AMX: 1024 int8 MACs per cycle" in peaks["int8"].source
    assert peaks["bf16"].ops_per_cycle_per_core == 1024  # AMX: 512 bf16 MACs
    assert peaks["fp16"].ops_per_cycle_per_core == 128  # avx512_fp16; no amx_fp16
    assert SPR.clock_ghz == 2.4 and SPR.clock_source == "current cpu MHz"


def test_vnni_without_amx_is_four_times_the_fp32_lanes_and_no_vnni_still_bounds_int8() -> None:
    no_amx = parse_cpuinfo(
        _cpuinfo("GenuineIntel", 6, 106, "Intel Xeon", "2000", "avx2 fma avx512f avx512_vnni")
    )
    assert isa_peaks(no_amx, 2.0, "measured")["int8"].ops_per_cycle_per_core == 4 * 64
    avx2 = parse_cpuinfo(_cpuinfo("GenuineIntel", 6, 158, "Intel Core", "3000", "avx2 fma"))
    int8 = isa_peaks(avx2, 3.0, "measured")["int8"]
    assert int8.ops_per_cycle_per_core == 4 * 32 and "widening adds not counted" in int8.source


def test_unknown_cpu_falls_back_to_an_upper_bound_and_says_so() -> None:
    unknown = parse_cpuinfo(_cpuinfo("HygonGenuine", 24, 1, "Hygon C86", "2500", "avx2 fma"))
    core = identify_core(unknown)
    assert (core.known, core.fma_pipes, core.fma_bits) == (False, 2, 256)
    source = isa_peaks(unknown, 2.5, "measured")["fp32"].source
    assert "unknown core (HygonGenuine family 24 model 1)" in source
    assert "assumed: 2 pipes at the AVX2 width, no fewer" in source
    arm = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd\n")
    assert identify_core(arm).fma_pipes * identify_core(arm).fma_bits == 512


def test_clock_is_steps_times_cycles_over_the_fastest_chain() -> None:
    ticks = iter([0.0, 0.004, 0.004, 0.006, 0.006, 0.0095])  # chains of 4, 2 and 3.5 ms

    def chain(steps: int, x: int) -> int:
        return x

    import targets.hardware.clock as clock_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clock_module.time, "perf_counter", lambda: next(ticks))
        measured = measure_clock(steps=3_000_000, repeats=3, chain=chain)
    assert measured is not None
    assert measured.ghz == pytest.approx(CYCLES_PER_STEP * 3_000_000 / 0.002 / 1e9)
    assert "fastest of 3" in measured.method


def test_dependent_chain_is_the_documented_recurrence() -> None:
    x = 5
    for i in range(4):
        x = (x ^ i) + (x >> 3)
    assert dependent_chain(4, 5) == x


def test_ceiling_clock_is_the_measured_one_when_it_is_higher() -> None:
    measured = HostMeasurement(150.0, 2048, 40.0, 30.0, 512, 32, 2, "2", "now", 1.0, 3.69, "m")
    profile = HostProfile(ZEN4, measured, True, "cache.json")
    assert profile.clock == (3.69, "measured")  # not the 2.6 GHz the VM reports
    assert profile.peaks["fp32"].gflops == pytest.approx(2 * 3.69 * 32)


@pytest.mark.slow
def test_measured_clock_on_this_host_is_plausible() -> None:
    pytest.importorskip("numba")
    measured = measure_clock()
    assert measured is not None and 0.5 < measured.ghz < 7.0
