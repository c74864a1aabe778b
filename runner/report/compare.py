"""`runner report compare A B`: two results side by side with B/A ratios, each timing row with
whether its raw samples say the difference is real.

Rows are matched, never guessed: model results by batch size, op results by (op, dtype, shape,
provider); what has no partner is listed as only in A or only in B. Comparing targets, pipelines
or hosts is the point, so different ones are allowed; the header names every difference and
warns where a ratio mixes in more than the target (another host, another model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from ir.errors import AsicperfError
from runner.bench.stats import percentile
from runner.report.readings import worst_cosine
from runner.report.show import number_text, revision_text
from runner.report.significance import significance

_SHORT_FINGERPRINT = 19  # "sha256:" and 12 hex digits


@dataclass(frozen=True)
class Metric:
    """One compared figure: its name, how it is printed, and where a matched item keeps it.
    `timed` figures come from the timing samples, so the samples' significance applies."""

    name: str
    spec: str
    value: Callable[[Mapping[str, Any]], float | None]
    timed: bool


def _worst_cosine(batch: Mapping[str, Any]) -> float | None:
    return worst_cosine(batch["drift"]["outputs"])


def _accuracy(batch: Mapping[str, Any]) -> float | None:
    return (batch.get("accuracy") or {}).get("value")


MODEL_METRICS = (
    Metric("samples/s", ".1f", lambda batch: batch["qps"], timed=True),
    Metric("mean ms", ".3f", lambda batch: batch["latency_ms"]["mean"], timed=True),
    Metric("p50 ms", ".3f", lambda batch: batch["latency_ms"]["p50"], timed=True),
    Metric("p99 ms", ".3f", lambda batch: batch["latency_ms"]["p99"], timed=True),
    Metric("accuracy", ".4f", _accuracy, timed=False),
    Metric("worst cosine", ".7f", _worst_cosine, timed=False),
)
OP_METRICS = (
    Metric("median µs", ".1f", lambda case: case["latency_us"]["median"], timed=True),
    Metric("GFLOP/s", ".1f", lambda case: case["gflops"], timed=True),
    Metric("GB/s", ".1f", lambda case: case["gbps"], timed=True),
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
class _Item:
    """A matchable part of a result: a batch size or an op case, with its raw samples and
    its p10..p90 range where known."""

    key: str
    record: Mapping[str, Any]
    samples: Sequence[float] | None
    spread: tuple[float, float] | None


def compare_results(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> Comparison:
    """B against A: ratios B/A of every matched metric; an error when the kinds differ."""
    if a["kind"] != b["kind"]:
        raise AsicperfError(
            f"cannot compare {a_name} ({a['kind']} result) with {b_name} ({b['kind']} result): "
            "compare model results with model results, op results with op results"
        )
    items = _model_items if a["kind"] == "model" else _op_items
    metrics = MODEL_METRICS if a["kind"] == "model" else OP_METRICS
    a_items, b_items = items(a), items(b)
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
        kind=a["kind"],
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


def _rows(a: _Item, b: _Item, metrics: Sequence[Metric]) -> list[Row]:
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


def _model_items(document: Mapping[str, Any]) -> dict[str, _Item]:
    items = {}
    for batch in document["batches"]:
        latencies = batch["latencies_ms"]
        spread = None
        if latencies:
            ordered = sorted(latencies)
            spread = (percentile(ordered, 10), percentile(ordered, 90))
        key = f"batch {batch['batch_size']}"
        items[key] = _Item(key, batch, latencies, spread)
    return items


def _op_items(document: Mapping[str, Any]) -> dict[str, _Item]:
    items = {}
    for case in document["cases"]:
        key = f"{case['op']} {case['dtype']} {case['shape']} on {case['provider']}"
        latency = case["latency_us"]
        items[key] = _Item(key, case, case["samples_us"], (latency["p10"], latency["p90"]))
    return items


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[Difference, ...]:
    a_fields, b_fields = _identity(a), _identity(b)
    return tuple(
        Difference(field, a_fields[field], b_fields[field])
        for field in a_fields
        if a_fields[field] != b_fields[field]
    )


def _identity(document: Mapping[str, Any]) -> dict[str, str | None]:
    """What a run was, field by field; None where the document did not record it."""
    environment = document["environment"]
    if document["kind"] == "model":
        info = document["target_info"]
        fields: dict[str, str | None] = {
            "model": document["model"],
            "model fingerprint": document["ir_fingerprint"][:_SHORT_FINGERPRINT],
            "target": " ".join(part for part in (document["target"], info["version"]) if part),
            "pipeline": document["pipeline"] or "none",
            "scenario": document["scenario"],
        }
    else:
        fields = {"suite": document["suite"]}
    git = environment["git"]
    host = environment["host"]
    fields["host"] = (
        None if document.get("migrated_from") else f"{host['cpu']}, {host['cores']} cores"
    )
    fields["git revision"] = None if git is None else revision_text(git)
    fields["asicperf version"] = environment["packages"].get("asicperf")
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
