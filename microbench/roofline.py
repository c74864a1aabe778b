"""Where a measured kernel sits under its device's roofline: attainable throughput is
min(compute peak, arithmetic intensity x memory bandwidth), and a case's peak fraction is what
it achieved over what was attainable, so a bandwidth-bound softmax and a compute-bound GEMM are
both judged against the limit that actually binds them.

Ceilings come from the hardware database: a product's datasheet peaks, or for the host the
measured FP32 GEMM and triad bandwidth (`runner hw show host`), each ceiling naming its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from microbench.ops import BenchCase
from targets.hardware.host import HostProfile
from targets.hardware.spec import HardwareSpec

# Peak operations per cycle relative to AVX-512 FP32 FMA, for host dtypes that other units or
# instructions serve; applied to the *measured* FP32 peak, since a paper clock overstates it.
_HOST_DTYPE_UNITS: tuple[tuple[str, str, float, str], ...] = (
    ("int8", "amx_int8", 32.0, "AMX: 1024 int8 MACs per cycle per core"),
    ("int8", "avx512_vnni", 4.0, "AVX-512 VNNI: 4 int8 MACs per FP32 FMA lane"),
    ("int8", "avx_vnni", 4.0, "AVX-VNNI: 4 int8 MACs per FP32 FMA lane"),
    ("bf16", "amx_bf16", 16.0, "AMX: 512 bf16 MACs per cycle per core"),
    ("bf16", "avx512_bf16", 2.0, "AVX-512 BF16: 2 bf16 MACs per FP32 FMA lane"),
    ("fp16", "avx512_fp16", 2.0, "AVX-512 FP16: 32 lanes per FMA"),
)


@dataclass(frozen=True)
class Ceiling:
    """One roof: GFLOP/s (GOP/s for integers) or GB/s, and where the figure comes from."""

    value: float
    source: str


@dataclass(frozen=True)
class Roofline:
    """A device's compute ceilings per dtype and its memory bandwidth. A memory-bound case whose
    working set fits in `cache_bytes` (the last-level cache) is served by the cache, which the
    memory roof does not bound: it is marked "cache" with no peak fraction rather than credited
    with more than 100 % of a bandwidth it never used. When the caches are flushed before every
    sample, data comes from memory whatever its size: `cache_bytes` is then None."""

    device: str
    compute: Mapping[str, Ceiling]
    bandwidth: Ceiling | None
    cache_bytes: int | None = None

    def place(self, case: BenchCase, seconds: float) -> RooflinePoint:
        """The case's achieved rates and its fraction of the ceiling that bounds it."""
        gflops = case.flops / seconds / 1e9
        gbps = case.bytes / seconds / 1e9
        compute = self.compute.get(compute_dtype(case))
        bandwidth = self.bandwidth.value if self.bandwidth else None
        memory_roof = case.arithmetic_intensity * bandwidth if bandwidth else None
        if case.flops == 0 or (compute and memory_roof and memory_roof < compute.value):
            if self.cache_bytes is not None and case.bytes <= self.cache_bytes:
                bound, fraction = "cache", None
            else:
                bound, fraction = "memory", gbps / bandwidth if bandwidth else None
        elif compute is not None:
            bound, fraction = "compute", gflops / compute.value
        else:
            bound, fraction = None, None
        return RooflinePoint(gflops, gbps, case.arithmetic_intensity, bound, fraction)

    def to_json(self) -> dict[str, object]:
        return {
            "device": self.device,
            "compute_gflops": {
                dtype: {"value": c.value, "source": c.source} for dtype, c in self.compute.items()
            },
            "bandwidth_gbs": (
                {"value": self.bandwidth.value, "source": self.bandwidth.source}
                if self.bandwidth
                else None
            ),
            "cache_bytes": self.cache_bytes,
        }


@dataclass(frozen=True)
class RooflinePoint:
    """Achieved throughput; `bound` is None when the device publishes no ceiling for it."""

    gflops: float
    gbps: float
    intensity: float
    bound: str | None
    peak_fraction: float | None


def compute_dtype(case: BenchCase) -> str:
    """The arithmetic a case exercises: a matmul's input dtype, fp32 for everything else (a
    cast does no arithmetic and is judged by bandwidth alone)."""
    return case.dtype if case.op in ("gemm", "batch_gemm", "gemv") else "fp32"


def host_roofline(profile: HostProfile) -> Roofline:
    """The host: measured FP32 GEMM and triad bandwidth, other dtypes scaled from the measured
    FP32 peak by what the CPU's flags say its units do per cycle."""
    measured = profile.measurement
    fp32 = Ceiling(
        measured.fp32_gemm_gflops,
        f"measured: numpy FP32 GEMM {measured.gemm_size}^3, {measured.threads} threads",
    )
    compute = {"fp32": fp32}
    for dtype, flag, ratio, why in _HOST_DTYPE_UNITS:
        if dtype not in compute and flag in profile.cpu.flags:
            compute[dtype] = Ceiling(fp32.value * ratio, f"measured FP32 x {ratio:g} ({why})")
    bandwidth = Ceiling(
        measured.triad_gbs, f"measured: STREAM triad, {measured.array_mib} MiB arrays"
    )
    llc_bytes = measured.llc_mib * 2**20 if measured.llc_mib else None
    return Roofline(f"host: {profile.cpu.model}", compute, bandwidth, llc_bytes)


def spec_roofline(spec: HardwareSpec) -> Roofline:
    """A product from the database: its dense datasheet peaks and memory bandwidth."""
    source = f"datasheet: {spec.sources[0]}" if spec.sources else "datasheet"
    compute = {
        dtype: Ceiling(tflops * 1e3, source) for dtype, tflops in spec.peak_dense_tflops.items()
    }
    bandwidth = Ceiling(spec.memory_bandwidth_gbs, source) if spec.memory_bandwidth_gbs else None
    return Roofline(spec.name, compute, bandwidth)
