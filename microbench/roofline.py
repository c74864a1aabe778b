"""Where a measured kernel sits under its device's roofline: attainable throughput is
min(compute peak, arithmetic intensity x memory bandwidth), and a case's peak fraction is what
it achieved over what was attainable, so a bandwidth-bound softmax and a compute-bound GEMM are
both judged against the limit that actually binds them.

Ceilings are upper bounds, each naming its source: a product's datasheet peaks, or for the host
what its cores' units do per cycle at the measured clock (targets/hardware/cpu_peaks.py). What a
library measurably reaches on the host (numpy's FP32 GEMM, the STREAM triad) is kept apart as
the "achievable" line: a ceiling that a library beats (113 % of a measured GEMM) is no ceiling.
The host's memory roof is the fastest of the measured read, copy and triad streams, as nothing
inside the machine tells its DRAM's channels and speed: it is the one roof that is a
measurement, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from microbench.ops import BenchCase
from targets.hardware.host import HostProfile
from targets.hardware.spec import HardwareSpec


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
    sample, data comes from memory whatever its size: `cache_bytes` is then None.
    `achievable` and `achievable_bandwidth` are measured library rates, drawn below the roofs;
    peak fractions are never taken against them."""

    device: str
    compute: Mapping[str, Ceiling]
    bandwidth: Ceiling | None
    cache_bytes: int | None = None
    achievable: Mapping[str, Ceiling] = field(default_factory=dict)
    achievable_bandwidth: Ceiling | None = None

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
            "compute_gflops": _ceilings_json(self.compute),
            "bandwidth_gbs": _ceiling_json(self.bandwidth),
            "cache_bytes": self.cache_bytes,
            "achievable": {
                "compute_gflops": _ceilings_json(self.achievable),
                "bandwidth_gbs": _ceiling_json(self.achievable_bandwidth),
            },
        }


def _ceiling_json(ceiling: Ceiling | None) -> dict[str, object] | None:
    return {"value": ceiling.value, "source": ceiling.source} if ceiling else None


def _ceilings_json(ceilings: Mapping[str, Ceiling]) -> dict[str, object]:
    return {dtype: _ceiling_json(ceiling) for dtype, ceiling in ceilings.items()}


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
    """The host: ISA ceilings at the measured clock; numpy's FP32 GEMM and the triad as the
    achievable line."""
    measured = profile.measurement
    compute = {dtype: Ceiling(peak.gflops, peak.source) for dtype, peak in profile.peaks.items()}
    stream, gbs = measured.fastest_stream
    bandwidth = Ceiling(
        gbs,
        f"measured: {stream}, {measured.array_mib} MiB arrays (the fastest stream measured: "
        "host DRAM publishes no figure, so a kernel may exceed it slightly)",
    )
    gemm = Ceiling(
        measured.fp32_gemm_gflops,
        f"achievable: numpy FP32 GEMM {measured.gemm_size}^3, {measured.threads} threads",
    )
    triad = Ceiling(
        measured.triad_gbs, f"achievable: STREAM triad, {measured.array_mib} MiB arrays"
    )
    llc_bytes = measured.llc_mib * 2**20 if measured.llc_mib else None
    cpu = profile.cpu
    device = f"host: {cpu.model} ({profile.core.name}, {cpu.cores} cores)"
    return Roofline(device, compute, bandwidth, llc_bytes, {"fp32": gemm}, triad)


def spec_roofline(spec: HardwareSpec) -> Roofline:
    """A product from the database: its dense datasheet peaks and memory bandwidth."""
    source = f"datasheet: {spec.sources[0]}" if spec.sources else "datasheet"
    compute = {
        dtype: Ceiling(tflops * 1e3, source) for dtype, tflops in spec.peak_dense_tflops.items()
    }
    bandwidth = Ceiling(spec.memory_bandwidth_gbs, source) if spec.memory_bandwidth_gbs else None
    return Roofline(spec.name, compute, bandwidth)
