"""An op-level result (`runner bench --level op`): every case measured on every provider, with
its timing samples and its place under the roofline of the device it ran on, and the cases
that did not run.

Records named `...Record` mirror a type of microbench/ (TimingPolicy, Roofline, Ceiling,
CaseResult, CaseNotRun) as the document stores it: the report reads them without importing
what measured them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from runner.results.document import ResultDocument
from runner.results.record import Record, json_key


@dataclass(frozen=True, kw_only=True)
class TimingPolicyRecord(Record):
    """When timing stopped (docs/methodology.md); None where the document does not say."""

    warmup_s: float | None = None
    min_samples: int | None = None
    min_time_s: float | None = None
    max_time_s: float | None = None
    target_noise: float | None = None
    flush_cache_bytes: int | None = None


@dataclass(frozen=True, kw_only=True)
class CeilingRecord(Record):
    """A roof in GFLOP/s (GOP/s for integers) or GB/s, and where the figure comes from."""

    value: float
    source: str


@dataclass(frozen=True, kw_only=True)
class AchievableRecord(Record):
    """Measured library rates, drawn below the ceilings."""

    compute_gflops: Mapping[str, CeilingRecord] = field(default_factory=dict)
    bandwidth_gbs: CeilingRecord | None = None


@dataclass(frozen=True, kw_only=True)
class RooflineRecord(Record):
    device: str
    compute_gflops: Mapping[str, CeilingRecord] = field(default_factory=dict)
    bandwidth_gbs: CeilingRecord | None = None
    cache_bytes: int | None = None  # a working set that fits is cache-bound
    achievable: AchievableRecord | None = None  # None in results written before it existed


@dataclass(frozen=True, kw_only=True)
class CaseLatency(Record):
    """Per-call latency in microseconds."""

    median: float
    mean: float
    p10: float
    p90: float
    iqr: float


@dataclass(frozen=True, kw_only=True)
class CaseResultRecord(Record):
    """A case measured on one provider."""

    op: str
    provider: str
    dtype: str
    shape: str
    device: str | None = None
    flops: int | None = None
    nbytes: int | None = json_key("bytes", default=None)
    intensity: float  # FLOP per byte
    gflops: float
    gbps: float
    bound: str | None  # compute, memory, cache; None without a ceiling to judge by
    peak_fraction: float | None
    prepare_s: float | None = None
    latency_us: CaseLatency
    cv: float | None = None
    noise: float | None = None  # IQR / median
    noisy: bool  # never settled under the policy's target noise
    samples: int | None = None
    warmup_calls: int | None = None
    total_s: float | None = None
    samples_us: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class CaseNotRunRecord(Record):
    """A case a provider does not support, or whose kernel raised or gave a wrong result."""

    op: str
    provider: str
    dtype: str | None = None
    shape: str | None = None
    reason: str


@dataclass(frozen=True, kw_only=True)
class OpResult(ResultDocument):
    KIND: ClassVar[str] = "op"

    suite: str
    seconds: float | None = None  # the run's length
    policy: TimingPolicyRecord
    rooflines: Mapping[str, RooflineRecord]  # per hardware name
    cases: tuple[CaseResultRecord, ...]
    unsupported: tuple[CaseNotRunRecord, ...]
    failed: tuple[CaseNotRunRecord, ...]

    def providers(self) -> list[str]:
        return sorted({case.provider for case in self.cases})
