"""Products side by side, as a buyer reads spec sheets: one dtype's peak, memory, bandwidth,
power and price, each product also as a ratio to the first one named.

Value columns divide peak compute by what it costs: watts (TDP), dollars per accelerator-hour
for cloud prices, thousands of dollars for list prices. The two price kinds are never mixed in
one column, since an hourly rate and a purchase price do not compare.

The host can stand in a comparison too: its peaks are the ISA ceilings at the measured clock
(targets/hardware/cpu_peaks.py), its bandwidth the measured one, its power and price unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ir.errors import AsicperfError
from targets.hardware.host import HostProfile
from targets.hardware.spec import DTYPES, Price, unit


class Product(Protocol):
    """What a comparison reads of a product: a database entry (HardwareSpec) or the host."""

    @property
    def slug(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def memory_gb(self) -> float | None: ...
    @property
    def memory_bandwidth_gbs(self) -> float | None: ...
    @property
    def tdp_w(self) -> float | None: ...
    @property
    def price(self) -> Price | None: ...
    def peak(self, dtype: str, *, sparse: bool = False) -> float | None: ...


@dataclass(frozen=True)
class HostProduct:
    """The host as a product: ISA ceilings as dense peaks (in TFLOPS/TOPS), no sparse peaks,
    the fastest measured stream as bandwidth, and no TDP or price."""

    slug: str
    name: str
    memory_gb: float | None
    memory_bandwidth_gbs: float | None
    peaks_tflops: Mapping[str, float]
    tdp_w: float | None = None
    price: Price | None = None

    def peak(self, dtype: str, *, sparse: bool = False) -> float | None:
        return None if sparse else self.peaks_tflops.get(dtype)


def host_product(profile: HostProfile, slug: str = "host") -> HostProduct:
    cpu = profile.cpu
    return HostProduct(
        slug=slug,
        name=f"host: {cpu.model} ({profile.core.name}, {cpu.cores} cores)",
        memory_gb=round(cpu.memory_gib * 2**30 / 1e9, 1) if cpu.memory_gib else None,
        memory_bandwidth_gbs=profile.measurement.fastest_stream[1],
        peaks_tflops={dtype: peak.gflops / 1e3 for dtype, peak in profile.peaks.items()},
    )


@dataclass(frozen=True)
class ComparisonRow:
    """One product; every derived figure is None when an input was not published."""

    slug: str
    name: str
    peak: float | None
    peak_ratio: float | None
    memory_gb: float | None
    memory_ratio: float | None
    memory_bandwidth_gbs: float | None
    bandwidth_ratio: float | None
    tdp_w: float | None
    peak_per_watt: float | None
    price_usd: float | None
    price_kind: str | None
    peak_per_usd_hour: float | None
    peak_per_1000_usd: float | None


@dataclass(frozen=True)
class Comparison:
    """Rows in the order asked for; ratios are against `baseline`, the first product."""

    dtype: str
    sparse: bool
    unit: str
    baseline: str
    rows: tuple[ComparisonRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "sparse": self.sparse,
            "unit": self.unit,
            "baseline": self.baseline,
            "rows": [asdict(row) for row in self.rows],
        }


def compare(specs: Sequence[Product], dtype: str = "bf16", *, sparse: bool = False) -> Comparison:
    """Compare at least two products on `dtype`'s dense (or `sparse`) peak."""
    if len(specs) < 2:
        raise AsicperfError("compare needs at least two products")
    if dtype not in DTYPES:
        raise AsicperfError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPES)})")
    first = specs[0]
    rows = tuple(_row(spec, first, dtype, sparse) for spec in specs)
    return Comparison(dtype, sparse, unit(dtype), first.slug, rows)


def _row(spec: Product, first: Product, dtype: str, sparse: bool) -> ComparisonRow:
    peak = spec.peak(dtype, sparse=sparse)
    price = spec.price
    hourly = price.usd if price and price.kind == "cloud-hourly" else None
    listed = price.usd / 1000 if price and price.kind == "list" else None
    return ComparisonRow(
        slug=spec.slug,
        name=spec.name,
        peak=peak,
        peak_ratio=_ratio(peak, first.peak(dtype, sparse=sparse)),
        memory_gb=spec.memory_gb,
        memory_ratio=_ratio(spec.memory_gb, first.memory_gb),
        memory_bandwidth_gbs=spec.memory_bandwidth_gbs,
        bandwidth_ratio=_ratio(spec.memory_bandwidth_gbs, first.memory_bandwidth_gbs),
        tdp_w=spec.tdp_w,
        peak_per_watt=_ratio(peak, spec.tdp_w),
        price_usd=price.usd if price else None,
        price_kind=price.kind if price else None,
        peak_per_usd_hour=_ratio(peak, hourly),
        peak_per_1000_usd=_ratio(peak, listed),
    )


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator
