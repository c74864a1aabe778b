"""Upper bounds on what a CPU computes, from its cores' execution units and its clock.

A ceiling that a library can beat is no ceiling: a measured GEMM rate is what one library
achieved once, so it is reported as "achievable", never as the peak. The peak is
cores x FMA pipes x lanes x 2 x clock, where the pipes and their width come from the core's
microarchitecture (identified by vendor, family and model in /proc/cpuinfo), because flags
alone mislead: Zen 4 reports AVX-512 but executes it on two 256-bit datapaths (16 FP32 FMA
lanes per cycle), while a Sapphire Rapids Xeon has two 512-bit FMA units (32 lanes).

Lower-precision dtypes use what the core has for them, per cycle and core:
  AMX (amx_int8 / amx_bf16 / amx_fp16)  1024 int8 MACs, 512 bf16 or fp16 MACs
  VNNI (avx512_vnni, avx_vnni)          4 int8 MACs per FP32 FMA lane
  AVX-512 BF16 / FP16                   2 MACs per FP32 FMA lane
  none of these                         bf16/fp16 converted to FP32: the FP32 rate;
                                        int8 through vpmaddubsw: 4 MACs per FP32 lane,
                                        not counting the widening adds (an upper bound)
A core the table does not know gets two FMA pipes at the widest width its flags allow (no
x86 core has more), or four 128-bit pipes without x86 vector flags (the widest Arm NEON
cores), and its ceiling's source says so.

Everything here is a function of text-derived records (CpuInfo), so tests need no host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # host.py imports this module to derive its ceilings
    from targets.hardware.host import CpuInfo

AMD, INTEL = "AuthenticAMD", "GenuineIntel"
# Intel family 6 models with two 512-bit FMA units on every part: Sapphire Rapids, Emerald
# Rapids, Granite Rapids.
_INTEL_XEON_AMX_MODELS = {0x8F: "Sapphire Rapids", 0xCF: "Emerald Rapids", 0xAD: "Granite Rapids"}
AMX_INT8_MACS = 1024
AMX_16BIT_MACS = 512
HOST_DTYPES = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class CoreModel:
    """A core's FMA pipes and their datapath width; `known` False for the fallback rule."""

    name: str
    fma_pipes: int
    fma_bits: int
    known: bool
    note: str = ""

    @property
    def fp32_macs_per_cycle(self) -> int:
        return self.fma_pipes * self.fma_bits // 32

    def describe(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return f"{self.name}: {self.fma_pipes} FMA pipes x {self.fma_bits} bit{note}"


@dataclass(frozen=True)
class IsaPeak:
    """One dtype's ceiling in GFLOP/s (GOP/s for int8) and how it was derived."""

    dtype: str
    gflops: float
    ops_per_cycle_per_core: int
    source: str


def identify_core(cpu: CpuInfo) -> CoreModel:
    """The core's FMA pipes and width, from vendor, family, model and flags."""
    flags = set(cpu.flags)
    if cpu.vendor == AMD and cpu.family == 0x17:
        if (cpu.model_number or 0) < 0x30:
            return CoreModel("AMD Zen / Zen+", 2, 128, True, "256-bit ops split in two")
        return CoreModel("AMD Zen 2", 2, 256, True)
    if cpu.vendor == AMD and cpu.family == 0x19:
        if "avx512f" in flags:
            return CoreModel("AMD Zen 4", 2, 256, True, "AVX-512 double-pumped")
        return CoreModel("AMD Zen 3", 2, 256, True)
    if cpu.vendor == AMD and cpu.family == 0x1A:
        return CoreModel("AMD Zen 5", 2, 512, True, "mobile parts have 256-bit datapaths")
    if cpu.vendor == INTEL and cpu.family == 6:
        name = _INTEL_XEON_AMX_MODELS.get(cpu.model_number or -1)
        if name:
            return CoreModel(f"Intel Xeon {name}", 2, 512, True)
        if "avx512f" in flags:
            return CoreModel(
                "Intel AVX-512 core", 2, 512, True, "some Xeon Silver/Bronze parts have one"
            )
        if "avx2" in flags and "fma" in flags:
            return CoreModel("Intel AVX2 core", 2, 256, True)
    return _fallback_core(cpu)


def _fallback_core(cpu: CpuInfo) -> CoreModel:
    vendor = cpu.vendor or "unknown vendor"
    family = f" family {cpu.family} model {cpu.model_number}" if cpu.family is not None else ""
    name = f"unknown core ({vendor}{family})"
    if "avx512f" in cpu.flags:
        return CoreModel(name, 2, 512, False, "assumed: 2 pipes at the AVX-512 width, no fewer")
    if "avx2" in cpu.flags or "fma" in cpu.flags:
        return CoreModel(name, 2, 256, False, "assumed: 2 pipes at the AVX2 width, no fewer")
    return CoreModel(name, 4, 128, False, "assumed: 4 x 128-bit pipes, the widest NEON cores")


def isa_peaks(cpu: CpuInfo, clock_ghz: float, clock_source: str) -> dict[str, IsaPeak]:
    """fp32, fp16, bf16 and int8 ceilings for `cpu.cores` cores at `clock_ghz`."""
    core = identify_core(cpu)
    head = f"ISA: {cpu.cores} cores x {clock_ghz:.2f} GHz ({clock_source})"
    peaks = {}
    for dtype in HOST_DTYPES:
        unit = _dtype_unit(dtype, core, set(cpu.flags))
        if unit is None:
            continue
        macs, why = unit
        ops = 2 * macs
        op = "OP" if dtype == "int8" else "FLOP"
        peaks[dtype] = IsaPeak(
            dtype=dtype,
            gflops=cpu.cores * clock_ghz * ops,
            ops_per_cycle_per_core=ops,
            source=f"{head} x {ops} {op}/cycle ({why}; {core.describe()})",
        )
    return peaks


def _dtype_unit(dtype: str, core: CoreModel, flags: set[str]) -> tuple[int, str] | None:
    """MACs per cycle per core for `dtype`, and the unit that does them."""
    fp32 = core.fp32_macs_per_cycle
    if dtype == "fp32":
        return fp32, "FP32 FMA"
    if dtype in ("bf16", "fp16"):
        amx, dot = ("amx_bf16", "avx512_bf16") if dtype == "bf16" else ("amx_fp16", "avx512_fp16")
        if amx in flags:
            return AMX_16BIT_MACS, f"AMX: {AMX_16BIT_MACS} {dtype} MACs per cycle"
        if dot in flags:
            return 2 * fp32, f"{dot}: 2 {dtype} MACs per FP32 lane"
        return fp32, f"no {dtype} unit: converted to FP32"
    if "amx_int8" in flags:
        return AMX_INT8_MACS, f"AMX: {AMX_INT8_MACS} int8 MACs per cycle"
    if "avx512_vnni" in flags:
        return 4 * fp32, "avx512_vnni: 4 int8 MACs per FP32 lane"
    if "avx_vnni" in flags:
        lanes = core.fma_pipes * min(core.fma_bits, 256) // 32
        return 4 * lanes, "avx_vnni: 4 int8 MACs per 256-bit FP32 lane"
    if "avx2" in flags:
        return 4 * fp32, "vpmaddubsw: 4 int8 MACs per FP32 lane, widening adds not counted"
    return None
