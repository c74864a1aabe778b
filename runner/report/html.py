"""`runner report html`: one self-contained HTML page from any number of result documents.

Charts are inline SVG drawn here in Python and the style sheet is inline, so the file opens
offline, attaches to an e-mail or a CI artifact as is, and runs no script at all."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.report.costs import CostOverride
from runner.report.hardware_section import hardware_section
from runner.report.llm_html import llm_section, perplexity_cell
from runner.report.markup import (
    Markup,
    badge,
    esc,
    grid,
    note,
    number,
    section,
    table,
    with_flag,
)
from runner.report.model_sections import (
    audit_section,
    batches_section,
    drift_section,
    latency_figures,
    throughput_section,
)
from runner.report.op_sections import op_latency_figures, roofline_section
from runner.report.profile_html import PROFILE_SECTION, profile_section
from runner.report.readings import (
    precision_flag,
    precision_text,
    result_folder,
    where,
    worst_cosine,
)
from runner.report.sweep_folder import SweepFolder
from runner.report.sweep_section import sweep_section
from runner.results.files import Result
from runner.results.llm import LlmResult
from runner.results.model import AccuracyRecord, ModelResult
from runner.results.op import OpResult
from runner.results.profile import ProfileResult

SUMMARY_HEADERS = (
    "kind",
    "model / suite",
    "target / providers",
    "pipeline",
    "best batch",
    "best samples/s",
    "p99 ms at best",
    "accuracy",
    "worst cosine vs reference",
    "where it ran (cpu; git; created)",
    "source",
)
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2933;
  margin: 0 auto; padding: 24px 32px 64px; max-width: 1500px; background: #fafbfc; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 40px 0 4px; padding-bottom: 4px; border-bottom: 2px solid #d9e2ec; }
h3 { font-size: 15px; margin: 18px 0 6px; }
nav a { margin-right: 14px; color: #2f5d8a; }
.intro, .note { color: #52606d; margin: 4px 0 12px; }
.note { font-size: 12.5px; }
table { border-collapse: collapse; background: white; font-size: 13px; margin-bottom: 12px; }
th, td { border: 1px solid #d9e2ec; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f4f8; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.nowrap { white-space: nowrap; }
.badge { border-radius: 3px; padding: 0 5px; font-size: 12px; font-weight: 600; }
.badge.good { background: #e3f9e5; color: #207227; }
.badge.bad { background: #ffe3e3; color: #a61b1b; }
.badge.warn { background: #fff3c4; color: #8d4b00; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); gap: 18px; }
figure { margin: 0; background: white; border: 1px solid #d9e2ec; border-radius: 6px;
  padding: 10px 14px; }
figure h3 { margin: 0 0 6px; }
svg.chart { width: 100%; height: auto; display: block; font-size: 12px; }
svg .grid { stroke: #e4e7eb; stroke-width: 1; }
svg .axis { stroke: #52606d; stroke-width: 1; }
svg .tick { fill: #52606d; font-size: 11px; }
svg .value { fill: #1f2933; font-size: 11px; }
svg .axis-title { fill: #1f2933; font-size: 12px; font-weight: 600; }
svg .series { stroke-width: 2; }
svg .point { stroke-width: 1.5; }
svg .whisker { stroke-width: 1.2; }
svg .inner { stroke-width: 4; stroke-opacity: 0.55; }
svg .iqr { fill-opacity: 0.35; }
svg .tick-mark { stroke-width: 2; }
svg .median { stroke: #1f2933; stroke-width: 2; }
svg .roof { stroke: #7b8794; stroke-width: 2; }
svg .roof-achievable { stroke: #7b8794; stroke-width: 1.5; stroke-dasharray: 6 4; }
svg .roof-label { fill: #52606d; font-size: 11px; }
.legend { list-style: none; padding: 0; margin: 6px 0 0; display: flex; flex-wrap: wrap;
  gap: 4px 16px; font-size: 12.5px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
"""
SECTIONS = (
    ("summary", "Summary"),
    ("batches", "Batches"),
    ("throughput", "Throughput"),
    ("latency", "Latency"),
    ("drift", "Drift"),
    ("audit", "Pass audit"),
    ("llm", "LLM runs"),
    ("roofline", "Roofline"),
    PROFILE_SECTION,
    ("hardware", "Hardware"),
)
SWEEP_SECTION = ("sweep", "Sweep")  # after the summary, when the page reads sweep folders


def render_html(
    results: Sequence[tuple[str, Result]],
    overrides: Mapping[str, CostOverride],
    page_folder: Path = Path(),
    sweeps: Sequence[SweepFolder] = (),
) -> str:
    """The whole page; sections with nothing to show say so in one line. `results` are (the
    result.json or folder it was read from, the result); `page_folder` is where the page is
    written, which links to a result's LoadGen logs are relative to. Sweep folders (their
    results among `results`) add their side-by-side section after the summary."""
    model_sources = [(s, r) for s, r in results if isinstance(r, ModelResult)]
    model_results = [r for _, r in model_sources]
    models = list(enumerate(model_results))
    folders = {i: _href(result_folder(s), page_folder) for i, (s, _) in enumerate(model_sources)}
    ops = [r for _, r in results if isinstance(r, OpResult)]
    llms = [
        (r, _href(result_folder(s), page_folder)) for s, r in results if isinstance(r, LlmResult)
    ]
    profiles = [(s, r) for s, r in results if isinstance(r, ProfileResult)]
    latency = latency_figures(models) + op_latency_figures(ops)
    body = [
        section("summary", "Summary", "One row per result file.", _summary(results)),
        sweep_section(sweeps, overrides) if sweeps else "",
        batches_section(models, folders) or _empty("batches", "model"),
        throughput_section(models) or _empty("throughput", "model"),
        section(
            "latency",
            "Latency distributions",
            "Per query for model results (one box per batch size), per call for op cases.",
            grid(latency),
        )
        if latency
        else _empty("latency", "model or op"),
        drift_section(models) or _empty("drift", "model", "with drift histograms"),
        audit_section(models) or _empty("audit", "model", "with a pass audit"),
        llm_section(llms) or _empty("llm", "LLM"),
        roofline_section(ops) or _empty("roofline", "op-level"),
        profile_section(profiles) or _empty("profile", "profile"),
        hardware_section(model_results, ops, overrides),
    ]
    sections = SECTIONS[:1] + ((SWEEP_SECTION,) if sweeps else ()) + SECTIONS[1:]
    nav = "".join(f'<a href="#{anchor}">{esc(name)}</a>' for anchor, name in sections)
    count = f"{len(results)} result{'s' if len(results) != 1 else ''}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>asicperf report: {esc(count)}</title><style>{STYLE}</style></head><body>"
        f"<h1>asicperf report</h1><p class=intro>{esc(count)}</p><nav>{nav}</nav>"
        f"{''.join(body)}</body></html>\n"
    )


def _href(folder: Path, page_folder: Path) -> str:
    """`folder` relative to the page's folder, "/"-separated as a link wants it."""
    return Path(os.path.relpath(folder.absolute(), page_folder.absolute())).as_posix()


def _empty(anchor: str, kind: str, what: str = "") -> str:
    name = dict(SECTIONS)[anchor]
    return section(anchor, name, "", note(f"No {kind} results{' ' + what if what else ''}."))


def _summary(results: Sequence[tuple[str, Result]]) -> str:
    rows = [_summary_row(path, r) for path, r in results]
    return table(SUMMARY_HEADERS, rows, (4, 5, 6, 8))


def _summary_row(path: str, result: Result) -> list[object]:
    kind = result.KIND
    if result.migrated_from:
        kind = f"{kind} (upgraded from {result.migrated_from})"
    if isinstance(result, OpResult):
        unmeasured = [None] * 6  # pipeline, batch, throughput, latency, accuracy, drift
        return [kind, result.suite, ", ".join(result.providers()), *unmeasured, where(result), path]
    if isinstance(result, ProfileResult):  # its figures are in the profile section
        batch = [result.pipeline or "none", result.batch_size, None, None, None, None]
        return [kind, result.model, result.target, *batch, where(result), path]
    info = result.target_info
    flag = precision_flag(result.precision)  # beside the drift, which it changed
    if isinstance(result, LlmResult):  # no best batch; its runs are in the LLM section
        perplexity = with_flag(perplexity_cell(result.accuracy), flag)
        measured: list[object] = [None, None, None, perplexity, None]
    else:
        chosen = result.best()
        measured = [
            result.best_batch,
            number(chosen.qps) if chosen else None,
            number(chosen.latency_ms.p99) if chosen else None,
            _accuracy(result.accuracy),
            with_flag(number(worst_cosine(result.drift.outputs), 9), flag),
        ]
    target = f"{info.name} {info.version or ''}".strip()
    precision = precision_text(result.precision)
    return [
        kind,
        result.model,
        target if precision is None else f"{target}, {precision}",
        result.pipeline or "none",
        *measured,
        where(result),
        path,
    ]


def _accuracy(accuracy: AccuracyRecord | None) -> Markup | None:
    if accuracy is None:
        return None
    passed = accuracy.passed
    verdict = "" if passed is None else badge("pass" if passed else "fail", passed).html
    value = f"{esc(accuracy.metric)} {esc(number(accuracy.value, 4))}"
    return Markup(f"{value} {verdict}".strip())
