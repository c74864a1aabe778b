"""A model-level result (`runner bench --level model`): what ran (model, pipeline and its audit,
target), each batch size's throughput, latency, coverage and verdict, the best batch size, and
the outputs' accuracy and drift against the reference target.

Records named `...Record` mirror a type of the measuring side (zoo's Accuracy and DriftReport,
the target's TargetInfo) as the document stores it: the report reads them without importing
what measured them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runner.results.document import ResultDocument
from runner.results.record import Record, json_key, omitted_when_none


@dataclass(frozen=True, kw_only=True)
class LatencyStats(Record):
    """Latency in milliseconds. A batch's `latency_ms` holds LoadGen's figures (its percentile
    is the sorted sample at index floor(n * p)); its `batch_ms` and results measured before
    LoadGen hold nearest-rank percentiles (runner/bench/stats.py)."""

    mean: float
    p50: float
    p90: float
    p99: float
    min: float | None = None  # absent in results written before they were recorded
    max: float | None = None
    p95: float | None = omitted_when_none()  # LoadGen's; absent from asicperf's own figures
    p97: float | None = omitted_when_none()
    p999: float | None = omitted_when_none()


@dataclass(frozen=True, kw_only=True)
class LoadgenRecord(Record):
    """What LoadGen said about one batch size's performance run beyond its figures: the
    percentile it judged, its early-stopping result, its own errors and warnings, and where
    its logs are (paths relative to the result's folder)."""

    scenario: str  # LoadGen's name: SingleStream, MultiStream, Server, Offline
    target_latency_percentile: float  # 0.9 = p90
    early_stopping: tuple[str, ...] = ()  # LoadGen's early-stopping result, one line per point
    early_stopping_latency_ms: float | None = None  # its estimate of the target percentile
    overlatency_queries: int | None = None  # Server: queries over the latency bound
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()  # mlperf_log_summary.txt, mlperf_log_detail.txt


@dataclass(frozen=True, kw_only=True)
class Coverage(Record):
    """How much of the compiled model ran on the target: the rest ran on the reference
    fallback path, and a figure that hides that measures the fallback."""

    nodes: int
    fallback_nodes: int
    node_coverage: float
    flop_coverage: float | None  # None when no node has a known FLOP count


@dataclass(frozen=True, kw_only=True)
class PrecisionRecord(Record):
    """The floating-point type the target computed in, and who chose it (the target's
    PrecisionChoice, targets/precision_choice.py): a target that ran a float32 model in
    bfloat16 by its own default makes figures that compare a bf16 run with float32 ones, and
    a report says so beside the drift it caused. Recorded only by targets that report it."""

    model: str  # the model's type as compiled
    requested: str  # what the target's options asked; "default": left to the target
    effective: str  # what the target reports it computed in
    chosen_by: str  # "model", "user" or "target"


@dataclass(frozen=True, kw_only=True)
class KlDivergenceRecord(Record):
    """A vocabulary output's KL divergence from the reference per position, in nats
    (ir/logit_drift.py)."""

    mean: float
    p99: float
    max: float


@dataclass(frozen=True, kw_only=True)
class PerplexityChangeRecord(Record):
    """The perplexity of the checked token ids under the reference's and the candidate's
    logits (a numeric check fed real text), and their ratio."""

    reference: float
    candidate: float
    ratio: float


@dataclass(frozen=True, kw_only=True)
class OutputDriftRecord(Record):
    """One output against the reference: ir/drift.py's figures, the counts of |difference|
    per histogram bin and the top-1 agreement (None where it does not apply); a vocabulary
    output's KL divergence and same-top-1 rate (absent for other outputs), and, checked on
    real text, its perplexity change."""

    index: int
    max_abs: float | None = None
    mean_abs: float | None = None
    max_rel: float | None = None
    mean_rel: float | None = None
    cosine: float | None = None
    shape_match: bool | None = None
    histogram: tuple[int, ...] | None = None
    top1_agreement: float | None = None
    # a frozen record: the call only marks the field as left out when None
    kl_divergence: KlDivergenceRecord | None = omitted_when_none()  # noqa: RUF009
    perplexity: PerplexityChangeRecord | None = omitted_when_none()  # noqa: RUF009


@dataclass(frozen=True, kw_only=True)
class DriftRecord(Record):
    """Every output's drift; `bins` names the histogram's bins. The document's top-level drift
    says which batch size it was checked at; a batch's own drift does not."""

    bins: tuple[str, ...] | None = None
    outputs: tuple[OutputDriftRecord, ...]
    batch_size: int | None = omitted_when_none()


@dataclass(frozen=True, kw_only=True)
class AccuracyRecord(Record):
    """The task metric on the data set, and whether it meets the workload's threshold. `logs`:
    LoadGen's accuracy run that produced the outputs scored (relative to the result's folder;
    absent when the metric came from drift on the seeded batch)."""

    metric: str
    value: float | None = None
    samples: int | None = None
    threshold: float | None = None
    passed: bool | None = None
    logs: tuple[str, ...] | None = omitted_when_none()


@dataclass(frozen=True, kw_only=True)
class PassDrift(Record):
    """A pass's numeric check: outputs against the previous pass's and the input model's."""

    seed: int | None = None
    vs_previous: tuple[OutputDriftRecord, ...] = ()
    vs_input: tuple[OutputDriftRecord, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AuditedPass(Record):
    """One pass of the pipeline's audit, without its change lists (passes/audit.py)."""

    seq: int | None = None
    pass_name: str = json_key("pass")
    config: Mapping[str, Any] = field(default_factory=dict)
    in_fingerprint: str | None = None
    out_fingerprint: str | None = None
    modified: bool
    wall_ms: float | None = None
    nodes_before: int | None = None
    nodes_after: int | None = None
    rule_counts: Mapping[str, int] = field(default_factory=dict)
    numeric: PassDrift | None  # None when the pass changed nothing


@dataclass(frozen=True, kw_only=True)
class AuditSummary(Record):
    """The pipeline's audit: `fingerprint` is equal for two runs that did the same thing."""

    fingerprint: str
    passes: tuple[AuditedPass, ...]


@dataclass(frozen=True, kw_only=True)
class BatchResult(Record):
    """One batch size measured under LoadGen: throughput in samples/s (LoadGen's samples, each
    a batch, times the batch size), LoadGen's latency figures and verdict, and the SUT's own
    clock: each query's latency and the session's time per batch."""

    batch_size: int
    qps: float
    latency_ms: LatencyStats  # LoadGen's: per query; offline: per sample from the run's start
    valid: bool
    why: str  # the LoadGen rules that failed (and its errors), or those met
    compile_s: float | None = None
    queries: int  # LoadGen's query count (offline: its one query)
    duration_s: float | None = None
    drift: DriftRecord  # against the reference target, on the seeded batch
    accuracy: AccuracyRecord | None = None  # measured on the run's first batch size only
    latencies_ms: tuple[float, ...] | None = None  # every query in issue order; None: not kept
    audit: AuditSummary | None = None  # the pipeline's audit, on the first batch size only
    coverage: Coverage | None = None  # None in results written before it was recorded
    batch_ms: LatencyStats | None = None  # the session alone, per batch
    loadgen: LoadgenRecord | None = None  # None: measured before LoadGen
    # None: the target recorded none (it runs the model's own type), or written before
    precision: PrecisionRecord | None = omitted_when_none()  # noqa: RUF009


@dataclass(frozen=True, kw_only=True)
class BatchChoice(Record):
    """Why a batch size is or is not the best one."""

    batch_size: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class TargetInfoRecord(Record):
    name: str
    version: str | None
    device: str | None
    hardware: str | None  # a hardware database slug, or "host"


@dataclass(frozen=True, kw_only=True)
class ModelResult(ResultDocument):
    KIND: ClassVar[str] = "model"

    model: str  # the zoo name or path as given
    ir_fingerprint: str  # of the model as loaded, before any pass
    target: str  # the target spec, with its options
    pipeline: str | None  # as given
    resolved_pipeline: str | None = None  # the passes that ran, bound to the target
    scenario: str
    target_info: TargetInfoRecord
    target_options: Mapping[str, Any] = field(default_factory=dict)
    audit: AuditSummary | None
    workload: Mapping[str, Any] = field(default_factory=dict)  # after command-line overrides
    settings: Mapping[str, Any] = field(default_factory=dict)  # the scenario's settings
    compile_s: float  # summed over the batch sizes
    batches: tuple[BatchResult, ...]
    best_batch: int | None
    latency_bound_ms: float | None = None
    batch_choice: tuple[BatchChoice, ...] | None = None  # None: written before it was recorded
    accuracy: AccuracyRecord | None
    drift: DriftRecord
    # the first batch's (each batch compiles on its own; each batch keeps its own)
    precision: PrecisionRecord | None = omitted_when_none()  # noqa: RUF009

    def best(self) -> BatchResult | None:
        """The batch the benchmark chose as best, if any."""
        return next((b for b in self.batches if b.batch_size == self.best_batch), None)
