"""The report's sections on model results: throughput over batch size, latency spread, numeric
drift against the FP32 reference, and drift pass by pass from the audit. Each takes the model
results in page order, so a result keeps its colour from chart to chart."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from itertools import groupby

from runner.report.charts import BarGroup, Point, Series, bar_chart, box_chart, line_chart
from runner.report.markup import (
    Markup,
    badge,
    color,
    esc,
    figure,
    grid,
    legend,
    link,
    note,
    number,
    section,
    table,
    warning_badge,
)
from runner.report.readings import (
    batch_distribution,
    best_batch_rule,
    fallback_warning,
    label,
    latency_note,
    loadgen_notes,
    precision_flag,
    precision_text,
    share_text,
    worst_cosine,
    worst_max_abs,
)
from runner.results.model import AuditedPass, BatchResult, ModelResult

Indexed = Sequence[tuple[int, ModelResult]]  # (colour index, model result)


def _by_model(models: Indexed) -> list[tuple[str, list[tuple[int, ModelResult]]]]:
    ordered = sorted(models, key=lambda item: item[1].model)
    return [(name, list(items)) for name, items in groupby(ordered, lambda i: i[1].model)]


def throughput_section(models: Indexed) -> str:
    """Samples/s over batch size, one chart per model, one line per result."""
    figures = []
    for model, items in _by_model(models):
        series = [_throughput_series(i, r) for i, r in items if r.batches]
        if not series:
            continue
        chart = line_chart(series, "batch size", "samples/s", f"{model}: samples/s by batch size")
        caption = legend((s.label, s.color) for s in series) + note(
            "Filled points are VALID runs, hollow points INVALID (see the tooltip for why)."
        )
        figures.append(figure(f"{model}: throughput by batch size", chart, caption))
    if not figures:
        return ""
    intro = "Samples per second at each batch size tried; x is log2, one line per result."
    return section("throughput", "Throughput vs batch size", intro, grid(figures))


def _throughput_series(index: int, result: ModelResult) -> Series:
    name = label(result)
    points = tuple(
        Point(
            batch.batch_size,
            batch.qps,
            f"{name}: batch {batch.batch_size}, {number(batch.qps)} samples/s, "
            f"p99 {number(batch.latency_ms.p99)} ms, "
            f"{'VALID' if batch.valid else 'INVALID'} ({batch.why})",
            batch.valid,
        )
        for batch in sorted(result.batches, key=_size)
    )
    return Series(name, color(index), points)


BATCH_HEADERS = (
    "batch",
    "samples/s",
    "p99 ms",
    "nodes on target",
    "FLOPs on target",
    "verdict",
    "best batch?",
    "LoadGen logs",
)


def batches_section(models: Indexed, folders: Mapping[int, str]) -> str:
    """A table per model result: each batch size's figures, how much of the model ran on the
    target, LoadGen's verdict with its reasons, errors and warnings, why it is or is not the
    best batch, and links to LoadGen's logs (`folders`: each result's folder, relative to the
    page); a result that ran work on the reference fallback path says so above its table."""
    blocks = []
    for index, result in models:
        if not result.batches:
            continue
        folder = folders[index]
        choice = {c.batch_size: c.reason for c in result.batch_choice or ()}
        rows = [_batch_row(batch, choice, folder) for batch in result.batches]
        warning = fallback_warning(result)
        flag = "" if warning is None else f"<p>{badge(warning, False).html}</p>"
        accuracy = result.accuracy
        accuracy_logs = ""
        if accuracy is not None and accuracy.logs:
            links = log_links(accuracy.logs, folder).html
            accuracy_logs = f'<p class="note">LoadGen logs of the accuracy run: {links}</p>'
        meaning = latency_note(result)
        blocks.append(
            f"<h3>{esc(label(result))}</h3>{note(_choice_rule(result))}"
            f"{'' if meaning is None else note(meaning)}{_precision_note(result)}{flag}"
            f"{table(BATCH_HEADERS, rows, (0, 1, 2, 3, 4))}{accuracy_logs}"
        )
    if not blocks:
        return ""
    intro = (
        "Per batch size: throughput, p99 latency, the share of nodes and FLOPs that ran on the "
        "target (the rest ran on the reference fallback path), LoadGen's verdict, why each "
        "batch size is or is not the best one, and LoadGen's own logs of the run."
    )
    return section("batches", "Batch sizes, coverage and verdicts", intro, "".join(blocks))


def _precision_note(result: ModelResult) -> str:
    """The precision each batch size computed in, where the target recorded it, with a badge
    for a flag (a precision the target chose on its own): "" where none was recorded."""
    by_text: dict[tuple[str, str | None], list[int]] = {}
    for batch in result.batches:
        text = precision_text(batch.precision)
        if text is not None:
            key = (text, precision_flag(batch.precision))
            by_text.setdefault(key, []).append(batch.batch_size)
    parts = []
    for (text, flag), sizes in by_text.items():
        badge_html = "" if flag is None else f" {warning_badge(flag).html}"
        batches = ", ".join(str(size) for size in sizes)
        parts.append(f"{esc(text)} at batch {esc(batches)}{badge_html}")
    return f'<p class="note">Precision: {"; ".join(parts)}</p>' if parts else ""


def log_links(logs: Sequence[str], folder: str) -> Markup:
    """A link per log ("summary", "detail", "accuracy"), relative to the page."""
    links = []
    for log in logs:
        name = posixpath.basename(log).removeprefix("mlperf_log_").rsplit(".", 1)[0]
        links.append(link(posixpath.normpath(posixpath.join(folder, log)), name).html)
    return Markup(" · ".join(links))


def _choice_rule(result: ModelResult) -> str:
    best = result.best_batch
    chosen = "none meets the rules" if best is None else f"batch {best}"
    return f"Best batch ({best_batch_rule(result)}): {chosen}."


def _batch_row(batch: BatchResult, choice: dict[int, str], folder: str) -> list[object]:
    coverage = batch.coverage
    verdict = badge("VALID" if batch.valid else "INVALID", batch.valid).html
    notes = "".join(f"<br>{esc(text)}" for text in loadgen_notes(batch))
    logs = batch.loadgen.logs if batch.loadgen is not None else ()
    return [
        batch.batch_size,
        number(batch.qps),
        number(batch.latency_ms.p99),
        share_text(None if coverage is None else coverage.node_coverage),
        share_text(None if coverage is None else coverage.flop_coverage),
        Markup(f"{verdict} {esc(batch.why)}{notes}"),
        choice.get(batch.batch_size),
        log_links(logs, folder) if logs else None,
    ]


def latency_figures(models: Indexed) -> list[str]:
    """A box per batch size for each model result."""
    figures = []
    for index, result in models:
        boxes = [batch_distribution(b) for b in sorted(result.batches, key=_size)]
        if not boxes:
            continue
        name = label(result)
        chart = box_chart(boxes, color(index), "ms", f"{name}: latency per query")
        caption = (
            ""
            if all(b.raw for b in boxes)
            else note(
                "Raw latencies were not recorded in this result: whiskers span min to max, ticks "
                "mark p90 and p99, the dark line the median."
            )
        )
        figures.append(figure(f"{name}: latency per query", chart, caption))
    return figures


def _size(batch: BatchResult) -> int:
    return batch.batch_size


def drift_section(models: Indexed) -> str:
    """The |difference| histogram against the FP32 reference, one chart per model, bars
    grouped by result."""
    figures = []
    for model, items in _by_model(models):
        bins = items[0][1].drift.bins or ()
        groups = [_drift_group(i, r) for i, r in items if r.drift.bins == bins]
        if not bins or not groups:
            continue
        chart = bar_chart(bins, groups, "share of output elements (%)", f"{model}: drift")
        caption = legend((g.label, g.color) for g in groups) + note(
            "|output - FP32 reference| per element, in decade bins; all outputs together, at "
            "the batch size each result checked drift on (in the tooltip)."
        )
        caption += "".join(
            f"<p>{esc(label(r))}: {warning_badge(flag).html}</p>"
            for _, r in items
            if r.drift.bins == bins and (flag := precision_flag(r.precision)) is not None
        )
        figures.append(figure(f"{model}: numeric drift vs FP32 reference", chart, caption))
    if not figures:
        return ""
    intro = "How far each result's outputs land from the reference, element by element."
    return section("drift", "Numeric drift per pipeline", intro, grid(figures))


def _drift_group(index: int, result: ModelResult) -> BarGroup:
    drift = result.drift
    bins = drift.bins or ()
    histograms = [o.histogram or () for o in drift.outputs]
    counts = [sum(h[i] for h in histograms if i < len(h)) for i in range(len(bins))]
    total = sum(counts) or 1
    name = label(result)
    tips = tuple(
        f"{name} (batch {drift.batch_size}): {count} of {total} elements "
        f"({number(100 * count / total)}%) with |diff| {bin_}"
        for bin_, count in zip(bins, counts, strict=True)
    )
    return BarGroup(name, color(index), tuple(100 * c / total for c in counts), tips)


PASS_HEADERS = (
    "#",
    "pass",
    "modified",
    "nodes before → after",
    "wall ms",
    "max |Δ| vs input",
    "worst cosine vs input",
)


def audit_section(models: Indexed) -> str:
    """A table per audited result: what each pass changed, and how far the outputs moved from
    the un-optimised model's after it."""
    blocks = []
    for _, result in models:
        audit = result.audit
        if audit is None:
            continue
        rows = [_pass_row(p) for p in audit.passes]
        blocks.append(f"<h3>{esc(label(result))}</h3>{table(PASS_HEADERS, rows, (0, 3, 4, 5, 6))}")
    if not blocks:
        return ""
    intro = (
        "Passes in order; the drift columns compare the model after each pass with the input "
        "model on the same seeded inputs (worst over outputs)."
    )
    return section("audit", "Per-pass drift from the audit", intro, "".join(blocks))


def _pass_row(audited: AuditedPass) -> list[object]:
    numeric = audited.numeric
    if numeric is None:
        drift: list[object] = ["no change", "no change"]
    else:
        vs_input = numeric.vs_input
        drift = [number(worst_max_abs(vs_input)), number(worst_cosine(vs_input), 9)]
    return [
        audited.seq,
        audited.pass_name,
        "yes" if audited.modified else "no",
        f"{audited.nodes_before} → {audited.nodes_after}",
        number(audited.wall_ms),
        *drift,
    ]
