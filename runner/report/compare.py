"""`runner report compare A B`: two results side by side with B/A ratios, each timing row with
whether its raw samples say the difference is real.

Rows are matched, never guessed: model results by batch size, op results by (op, dtype, shape,
provider), LLM results by (batch size, prompt length, generation length) with their accuracy on
real text as one more row; what has no partner is listed as only in A or only in B. Comparing
targets, pipelines or hosts is the point, so different ones are allowed; the header names every
difference and warns where a ratio mixes in more than the target (another host, another model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from rich.table import Table
from rich.text import Text

from ir.errors import AsicperfError
from runner.bench.stats import percentile
from runner.report.llm_readings import run_name, tpot_p50, ttft_p50
from runner.report.readings import precision_flag, precision_text, worst_cosine
from runner.report.show import revision_text
from runner.report.significance import significance
from runner.report.terminal import WARNING_STYLE, number_text
from runner.results.files import RESULT_KINDS, Result
from runner.results.llm import LlmAccuracy, LlmResult, LlmRun
from runner.results.model import BatchResult, ModelResult
from runner.results.op import CaseResultRecord, OpResult
from runner.results.upgrade import VERSIONS_WITHOUT_ENVIRONMENT

_SHORT_FINGERPRINT = 19  # "sha256:" and 12 hex digits
# what a row is matched on
Measured = TypeVar("Measured", BatchResult, CaseResultRecord, LlmRun, LlmAccuracy)


@dataclass(frozen=True)
class Metric(Generic[Measured]):
    """One compared figure: its name, how it is printed, and where a matched item keeps it.
    `timed` figures come from the timing samples, so the samples' significance applies."""

    name: str
    spec: str
    value: Callable[[Measured], float | None]
    timed: bool


def _accuracy(batch: BatchResult) -> float | None:
    return None if batch.accuracy is None else batch.accuracy.value


MODEL_METRICS: tuple[Metric[BatchResult], ...] = (
    Metric("samples/s", ".1f", lambda batch: batch.qps, timed=True),
    Metric("mean ms", ".3f", lambda batch: batch.latency_ms.mean, timed=True),
    Metric("p50 ms", ".3f", lambda batch: batch.latency_ms.p50, timed=True),
    Metric("p99 ms", ".3f", lambda batch: batch.latency_ms.p99, timed=True),
    Metric("accuracy", ".4f", _accuracy, timed=False),
    Metric("worst cosine", ".7f", lambda batch: worst_cosine(batch.drift.outputs), timed=False),
)
OP_METRICS: tuple[Metric[CaseResultRecord], ...] = (
    Metric("median µs", ".1f", lambda case: case.latency_us.median, timed=True),
    Metric("GFLOP/s", ".1f", lambda case: case.gflops, timed=True),
    Metric("GB/s", ".1f", lambda case: case.gbps, timed=True),
)
# LLM runs keep no raw samples: their timed rows say so rather than test anything
LLM_RUN_METRICS: tuple[Metric[LlmRun], ...] = (
    Metric("TTFT p50 ms", ".3f", ttft_p50, timed=True),
    Metric("TPOT p50 ms", ".3f", tpot_p50, timed=True),
    Metric("decode tokens/s", ".1f", lambda run: run.decode_tokens_per_s, timed=True),
    Metric("prefill tokens/s", ".1f", lambda run: run.prefill_tokens_per_s, timed=True),
)
LLM_ACCURACY_METRICS: tuple[Metric[LlmAccuracy], ...] = (
    Metric("perplexity", ".4f", lambda accuracy: accuracy.perplexity.value, timed=False),
    Metric("KL mean", ".4g", lambda accuracy: accuracy.kl_divergence.mean, timed=False),
    Metric("KL p99", ".4g", lambda accuracy: accuracy.kl_divergence.p99, timed=False),
    Metric("same top-1", ".4f", lambda accuracy: accuracy.same_top1, timed=False),
)
_SPECS = {
    metric.name: metric.spec
    for metric in (*MODEL_METRICS, *OP_METRICS, *LLM_RUN_METRICS, *LLM_ACCURACY_METRICS)
}


@dataclass(frozen=True)
class Row:
    """One metric of one matched item; p_value, overlap and note only on timed metrics;
    `precision`: the flag of a side whose target chose its precision on its own or ignored
    the one asked ("B: vendor default: bfloat16"), None when neither did."""

    key: str
    metric: str
    a: float | None
    b: float | None
    ratio: float | None
    p_value: float | None
    overlap: bool | None
    note: str | None
    precision: str | None


@dataclass(frozen=True)
class Difference:
    """A field of the two runs that is not the same (None: the document did not record it)."""

    field: str
    a: str | None
    b: str | None


@dataclass(frozen=True)
class Comparison:
    a_name: str
    b_name: str
    kind: str
    differences: tuple[Difference, ...]
    warnings: tuple[str, ...]
    rows: tuple[Row, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a_name,
            "b": self.b_name,
            "kind": self.kind,
            "differences": {d.field: {"a": d.a, "b": d.b} for d in self.differences},
            "warnings": list(self.warnings),
            "rows": [asdict(row) for row in self.rows],
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
        }


@dataclass(frozen=True)
class _Item(Generic[Measured]):
    """A matchable part of a result: a batch size, an op case, an LLM run or its accuracy,
    with the metrics compared on it, its raw samples and its p10..p90 range where known."""

    key: str
    record: Measured
    metrics: Sequence[Metric[Measured]]
    samples: Sequence[float] | None
    spread: tuple[float, float] | None
    flag: str | None  # the precision flag of the run that measured it


def compare_results(a: Result, b: Result, a_name: str, b_name: str) -> Comparison:
    """B against A: ratios B/A of every matched metric; an error when the kinds differ."""
    if a.KIND != b.KIND:
        alike = ", ".join(f"{kind} results with {kind} results" for kind in RESULT_KINDS)
        raise AsicperfError(
            f"cannot compare {a_name} ({a.KIND} result) with {b_name} ({b.KIND} result): "
            f"compare {alike}"
        )
    a_items, b_items = _items(a), _items(b)
    rows = tuple(
        row
        for key, a_item in a_items.items()
        if key in b_items
        for row in _rows(a_item, b_items[key])
    )
    differences = _differences(a, b)
    return Comparison(
        a_name=a_name,
        b_name=b_name,
        kind=a.KIND,
        differences=differences,
        warnings=_warnings(differences) + _precision_warnings(a, b),
        rows=rows,
        only_in_a=tuple(key for key in a_items if key not in b_items),
        only_in_b=tuple(key for key in b_items if key not in a_items),
    )


def comparison_table(comparison: Comparison) -> Table:
    """A grid: which runs, what differs (warnings first), the matched rows, the unmatched."""
    grid = Table.grid()
    grid.add_column()
    grid.add_row(Text(f"A: {comparison.a_name}\nB: {comparison.b_name}", style="bold"))
    for warning in comparison.warnings:
        grid.add_row(Text(f"warning: {warning}", style="bold yellow"))
    if comparison.differences:
        lines = [
            f"{d.field}: {_known(d.a)} (A) vs {_known(d.b)} (B)" for d in comparison.differences
        ]
        grid.add_row(Text("differences:\n  " + "\n  ".join(lines)))
    else:
        grid.add_row(Text("differences: none"))
    grid.add_row(_rows_table(comparison.rows))
    for side, keys in (("A", comparison.only_in_a), ("B", comparison.only_in_b)):
        if keys:
            grid.add_row(Text(f"only in {side}: {', '.join(keys)}"))
    return grid


def _rows_table(rows: Sequence[Row]) -> Table:
    """A row per metric; a precision column, only where a side of some item has a flag."""
    table = Table(title="B against A")
    flagged = any(row.precision for row in rows)
    for column in ("", "metric", "A", "B", "B/A", "note", *(["precision"] if flagged else [])):
        table.add_column(column)
    previous_key = None
    for row in rows:
        first = row.key != previous_key  # the key, its samples' note and flags, once per item
        cells = [
            Text(cell)
            for cell in (
                row.key if first else "",
                row.metric,
                number_text(row.a, _SPECS[row.metric]),
                number_text(row.b, _SPECS[row.metric]),
                number_text(row.ratio, ".4g"),
                (row.note or "") if first else "",
            )
        ]
        if flagged:
            cells.append(Text((row.precision or "") if first else "", style=WARNING_STYLE))
        table.add_row(*cells)
        previous_key = row.key
    if not rows:
        table.caption = "nothing matched"
    return table


def _rows(a: _Item[Measured], b: _Item[Measured]) -> list[Row]:
    timing = significance(a.samples, b.samples, a.spread, b.spread)
    flags = [f"{side}: {flag}" for side, flag in (("A", a.flag), ("B", b.flag)) if flag]
    rows = []
    for metric in a.metrics:
        a_value, b_value = metric.value(a.record), metric.value(b.record)
        if a_value is None and b_value is None:
            continue
        rows.append(
            Row(
                key=a.key,
                metric=metric.name,
                a=a_value,
                b=b_value,
                ratio=b_value / a_value if a_value and b_value is not None else None,
                p_value=timing.p_value if metric.timed else None,
                overlap=timing.overlap if metric.timed else None,
                note=timing.note() if metric.timed else None,
                precision="; ".join(flags) or None,
            )
        )
    return rows


def _items(result: Result) -> dict[str, _Item[Any]]:
    """The result's matchable items by key."""
    if isinstance(result, ModelResult):
        return _model_items(result)
    if isinstance(result, LlmResult):
        return _llm_items(result)
    return _op_items(result)


def _model_items(result: ModelResult) -> dict[str, _Item[BatchResult]]:
    items = {}
    for batch in result.batches:
        latencies = batch.latencies_ms
        spread = None
        if latencies:
            ordered = sorted(latencies)
            spread = (percentile(ordered, 10), percentile(ordered, 90))
        key = f"batch {batch.batch_size}"
        flag = precision_flag(batch.precision)
        items[key] = _Item(key, batch, MODEL_METRICS, latencies, spread, flag)
    return items


def _op_items(result: OpResult) -> dict[str, _Item[CaseResultRecord]]:
    items = {}
    for case in result.cases:
        key = f"{case.op} {case.dtype} {case.shape} on {case.provider}"
        latency = case.latency_us
        spread = (latency.p10, latency.p90)
        items[key] = _Item(key, case, OP_METRICS, case.samples_us, spread, None)
    return items


def _llm_items(result: LlmResult) -> dict[str, _Item[Any]]:
    """A run per (batch, prompt, gen), without raw samples; the accuracy, where measured. One
    compile serves them all, so they share its precision flag."""
    flag = precision_flag(result.precision)
    items: dict[str, _Item[Any]] = {
        run_name(run): _Item(run_name(run), run, LLM_RUN_METRICS, None, None, flag)
        for run in result.runs
    }
    if result.accuracy is not None:
        accuracy = result.accuracy
        items["accuracy"] = _Item("accuracy", accuracy, LLM_ACCURACY_METRICS, None, None, flag)
    return items


def _differences(a: Result, b: Result) -> tuple[Difference, ...]:
    a_fields, b_fields = _identity(a), _identity(b)
    return tuple(
        Difference(field, a_fields[field], b_fields[field])
        for field in a_fields
        if a_fields[field] != b_fields[field]
    )


def _identity(result: Result) -> dict[str, str | None]:
    """What a run was, field by field; None where the document did not record it."""
    environment = result.environment
    if isinstance(result, ModelResult | LlmResult):
        info = result.target_info
        fields: dict[str, str | None] = {
            "model": result.model,
            "model fingerprint": result.ir_fingerprint[:_SHORT_FINGERPRINT],
            "target": " ".join(part for part in (result.target, info.version) if part),
            "precision": precision_text(result.precision),
            "pipeline": result.pipeline or "none",
            "scenario": result.scenario,
        }
        if isinstance(result, LlmResult):
            fields["KV cache"] = result.kv_cache
    else:
        fields = {"suite": result.suite}
    git = environment.git
    host = environment.host
    unrecorded = result.migrated_from in VERSIONS_WITHOUT_ENVIRONMENT
    fields["host"] = None if unrecorded else f"{host.cpu}, {host.cores} cores"
    fields["git revision"] = None if git is None else revision_text(git)
    fields["asicperf version"] = environment.packages.get("asicperf")
    return fields


def _warnings(differences: Sequence[Difference]) -> tuple[str, ...]:
    """Differences that make a ratio measure more than the target and pipeline."""
    by_field = {d.field: d for d in differences}
    warnings = []
    host = by_field.get("host")
    if host is not None and host.a is not None and host.b is not None:
        warnings.append(
            f"different hosts ({host.a} vs {host.b}): the ratios include the machines' difference"
        )
    model = by_field.get("model fingerprint")
    if model is not None:
        warnings.append(
            f"different models ({model.a} vs {model.b}): the ratios compare different work"
        )
    return tuple(warnings)


def _precision_warnings(a: Result, b: Result) -> tuple[str, ...]:
    """A side whose target chose its precision on its own (or ignored the one asked): its
    drift, and its speed, include that change of precision."""
    warnings = []
    for side, result in (("A", a), ("B", b)):
        if isinstance(result, OpResult):
            continue
        flag = precision_flag(result.precision)
        if flag is not None:
            warnings.append(
                f"{side}: {flag}: the ratios and its drift include the precision its target chose"
            )
    return tuple(warnings)


def _known(value: str | None) -> str:
    return "not recorded" if value is None else value
