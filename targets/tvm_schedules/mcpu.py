"""Which CPU LLVM compiles for: LLVM's own host detection when the name it gives is a CPU whose
instruction sets are exactly those /proc/cpuinfo shows, else the newest generation the flags
prove.

Neither source is right everywhere. LLVM names a Zen 4 EPYC `znver4`, where the flags alone can
only say `cascadelake` (AVX-512 with VNNI), and LLVM's Zen 4 cost model is the better one there.
But this LLVM names some Sapphire Rapids Xeons `rocketlake`, a client CPU without AMX or
AVX512-BF16: there the flags' `sapphirerapids` is right. A name whose instruction sets differ
from the flags is also unsafe the other way round (a hypervisor that hides AVX-512 from a guest
on an AVX-512 CPU): code for it could fault. The choice is a pure function of the three inputs,
so it is tested on recorded samples of both machines.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass

# The instruction sets (cpuinfo's spelling) that separate the generations below; LLVM's name is
# taken only when its set of these matches the host's.
ISA_FLAGS = frozenset(
    {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16"}
    | {"amx_tile", "amx_int8", "amx_bf16"}
)
_AVX2 = frozenset({"avx2", "fma"})
_AVX512 = _AVX2 | {"avx512f"}
_VNNI = _AVX512 | {"avx512_vnni"}
_BF16 = _VNNI | {"avx512_bf16"}
_AMX = _BF16 | {"avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"}
# LLVM's x86-64 CPU names this module knows: vendor and the ISA_FLAGS each has.
KNOWN_CPUS: dict[str, tuple[str, frozenset[str]]] = {
    **{name: ("amd", _AVX2) for name in ("znver1", "znver2", "znver3")},
    **{name: ("amd", _BF16) for name in ("znver4", "znver5")},
    **{
        name: ("intel", _AVX2)
        for name in ("haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake")
    },
    "skylake-avx512": ("intel", _AVX512),
    **{
        name: ("intel", _VNNI)
        for name in ("cascadelake", "icelake-client", "icelake-server", "tigerlake", "rocketlake")
    },
    "cooperlake": ("intel", _BF16),
    **{name: ("intel", _AMX) for name in ("sapphirerapids", "emeraldrapids", "graniterapids")},
}
# Newest x86 generation first: the flags a generation needs, and LLVM's name for it.
_MCPU_BY_FLAGS = (
    (frozenset({"amx_tile", "amx_int8", "avx512_bf16"}), "sapphirerapids"),
    (frozenset({"avx512_vnni"}), "cascadelake"),
    (frozenset({"avx512f"}), "skylake-avx512"),
    (frozenset({"avx2"}), "haswell"),
)
_VENDORS = {"authenticamd": "amd", "amd": "amd", "genuineintel": "intel", "intel": "intel"}


@dataclass(frozen=True)
class McpuChoice:
    """The `mcpu` compiled for, where it came from (`option`, `llvm-host`, `cpu-flags`,
    `not-x86`) and why, for the compile record."""

    mcpu: str
    source: str
    why: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def mcpu_from_flags(flags: Collection[str]) -> str:
    """LLVM's name for the newest x86 generation whose instructions `flags` prove."""
    present = set(flags)
    return next((mcpu for needs, mcpu in _MCPU_BY_FLAGS if needs <= present), "x86-64")


def choose_mcpu(llvm_cpu: str, flags: Collection[str], vendor: str) -> McpuChoice:
    """LLVM's host CPU name `llvm_cpu` when it is a known CPU of the host's `vendor` (LLVM's
    `amd`/`intel` or cpuinfo's `AuthenticAMD`/`GenuineIntel`) with exactly the host's
    instruction sets, else the name the flags prove."""
    from_flags = mcpu_from_flags(flags)
    host_isa = ISA_FLAGS & set(flags)
    known = KNOWN_CPUS.get(llvm_cpu)
    if known is None:
        why = f"LLVM's host CPU '{llvm_cpu}' is not a CPU this toolkit knows"
    elif known[0] != _VENDORS.get(vendor.lower(), vendor.lower()):
        why = f"LLVM's host CPU '{llvm_cpu}' is an {known[0]} CPU, the host is {vendor}"
    elif known[1] != host_isa:
        missing = sorted(host_isa - known[1])
        extra = sorted(known[1] - host_isa)
        differences = [f"lacks {', '.join(missing)}"] if missing else []
        differences += [f"has {', '.join(extra)} that the host lacks"] if extra else []
        why = f"LLVM's host CPU '{llvm_cpu}' {' and '.join(differences)}"
    else:
        return McpuChoice(
            llvm_cpu,
            "llvm-host",
            f"LLVM's host CPU, whose instruction sets match the CPU flags "
            f"(the flags alone give '{from_flags}')",
        )
    return McpuChoice(from_flags, "cpu-flags", f"the newest generation the CPU flags prove: {why}")
