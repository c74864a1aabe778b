"""`runner report compare A B`: two results side by side with B/A ratios, each timing row with
whether its raw samples say the difference is real.

Rows are matched, never guessed: model results by batch size, op results by (op, dtype, shape,
provider); what has no partner is listed as only in A or only in B. Comparing targets, pipelines
or hosts is the point, so different ones are allowed; the header names every difference and
warns where a ratio mixes in more than the target (another host, another model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from rich.table import Table
from rich.text import Text

from ir.errors import AsicperfError
from runner.bench.stats import percentile
from runner.report.readings import worst_cosine
from runner.report.show import number_text, revision_text
from runner.report.significance import significance
from runner.results.files import Result
from runner.results.model import BatchResult, ModelResult
from runner.results.op import CaseResultRecord, OpResult

_SHORT_FINGERPRINT = 19  # "sha256:" and 12 hex digits
Measured = TypeVar("Measured", BatchResult, CaseResultRecord)  # what a row is matched on


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
_SPECS = {metric.name: metric.spec for metric in (*MODEL_METRICS, *OP_METRICS)}


@dataclass(frozen=True)
class Row:
    """One metric of one matched item; p_value, overlap and note only on timed metrics."""

    key: str
    metric: str
    a: float | None
    b: float | None
    ratio: float | None
    p_value: float | None
    overlap: bool | None
    note: str | None


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
    """A matchable part of a result: a batch size or an op case, with its raw samples and
    its p10..p90 range where known."""

    key: str
    record: Measured
    samples: Sequence[float] | None
    spread: tuple[float, float] | None


def compare_results(a: Result, b: Result, a_name: str, b_name: str) -> Comparison:
    """B against A: ratios B/A of every matched metric; an error when the kinds differ."""
    if a.KIND != b.KIND:
        raise AsicperfError(
            f"cannot compare {a_name} ({a.KIND} result) with {b_name} ({b.KIND} result): "
            "compare model results with model results, op results with op results"
        )
    (a_items, metrics), (b_items, _) = _items(a), _items(b)
    rows = tuple(
        row
        for key, a_item in a_items.items()
        if key in b_items
        for row in _rows(a_item, b_items[key], metrics)
    )
    differences = _differences(a, b)
    return Comparison(
        a_name=a_name,
        b_name=b_name,
        kind=a.KIND,
        differences=differences,
        warnings=_warnings(differences),
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
    table = Table(title="B against A")
    for column in ("", "metric", "A", "B", "B/A", "note"):
        table.add_column(column)
    previous_key = None
    for row in rows:
        first = row.key != previous_key  # the key and its samples' note, once per item
        cells = (
            row.key if first else "",
            row.metric,
            number_text(row.a, _SPECS[row.metric]),
            number_text(row.b, _SPECS[row.metric]),
            number_text(row.ratio, ".4g"),
            (row.note or "") if first else "",
        )
        table.add_row(*(Text(cell) for cell in cells))
        previous_key = row.key
    if not rows:
        table.caption = "nothing matched"
    return table


def _rows(a: _Item[Measured], b: _Item[Measured], metrics: Sequence[Metric[Measured]]) -> list[Row]:
    timing = significance(a.samples, b.samples, a.spread, b.spread)
    rows = []
    for metric in metrics:
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
            )
        )
    return rows


def _items(result: Result) -> tuple[dict[str, _Item[Any]], tuple[Metric[Any], ...]]:
    """The result's matchable items by key, and the metrics compared on them."""
    if isinstance(result, ModelResult):
        return _model_items(result), MODEL_METRICS
    return _op_items(result), OP_METRICS


def _model_items(result: ModelResult) -> dict[str, _Item[BatchResult]]:
    items = {}
    for batch in result.batches:
        latencies = batch.latencies_ms
        spread = None
        if latencies:
            ordered = sorted(latencies)
            spread = (percentile(ordered, 10), percentile(ordered, 90))
        key = f"batch {batch.batch_size}"
        items[key] = _Item(key, batch, latencies, spread)
    return items


def _op_items(result: OpResult) -> dict[str, _Item[CaseResultRecord]]:
    items = {}
    for case in result.cases:
        key = f"{case.op} {case.dtype} {case.shape} on {case.provider}"
        latency = case.latency_us
        items[key] = _Item(key, case, case.samples_us, (latency.p10, latency.p90))
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
    if isinstance(result, ModelResult):
        info = result.target_info
        fields: dict[str, str | None] = {
            "model": result.model,
            "model fingerprint": result.ir_fingerprint[:_SHORT_FINGERPRINT],
            "target": " ".join(part for part in (result.target, info.version) if part),
            "pipeline": result.pipeline or "none",
            "scenario": result.scenario,
        }
    else:
        fields = {"suite": result.suite}
    git = environment.git
    host = environment.host
    fields["host"] = None if result.migrated_from else f"{host.cpu}, {host.cores} cores"
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


def _known(value: str | None) -> str:
    return "not recorded" if value is None else value
