"""The report's section on LLM results: per result, its runs (token latencies, token rates,
memory, LoadGen's verdict), the server's constraints and goodput, the llama-bench summary
beside the anchor's, the accuracy on real text, and charts of TTFT, TPOT and decode tokens/s
against batch size, one line per prompt length."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby

from runner.report.charts import Point, Series, line_chart
from runner.report.llm_readings import (
    accuracy_fields,
    bench_lines,
    constraints_text,
    coverage_text,
    goodput_text,
    mib,
    run_name,
    tpot_p50,
    ttft_p50,
)
from runner.report.markup import (
    Markup,
    badge,
    color,
    esc,
    figure,
    grid,
    legend,
    note,
    number,
    render,
    section,
    table,
    with_flag,
)
from runner.report.model_sections import log_links
from runner.report.readings import (
    fallback_warning,
    label,
    loadgen_notes,
    precision_flag,
    precision_text,
)
from runner.results.llm import LlmAccuracy, LlmResult, LlmRun
from runner.results.model import LatencyStats

RUN_HEADERS = (
    "batch",
    "prompt",
    "gen",
    "TTFT p50 ms",
    "TTFT p99 ms",
    "TPOT p50 ms",
    "TPOT p99 ms",
    "prefill tokens/s",
    "decode tokens/s",
    "LoadGen tokens/s",
    "peak RSS MiB",
    "KV cache MiB",
    "verdict",
    "LoadGen logs",
)
SERVER_HEADERS = ("batch", "prompt", "gen", "constraints", "goodput")
Sourced = Sequence[tuple[LlmResult, str]]  # (LLM result, its folder relative to the page)


def llm_section(llms: Sourced) -> str:
    """A block per LLM result: its tables, then its charts; "" without an LLM result."""
    blocks = [_block(result, folder) for result, folder in llms]
    if not blocks:
        return ""
    intro = (
        "Per run (batch size, prompt length, generation length; one sample is a static batch): "
        "LoadGen's TTFT and TPOT per sample from its scheduled time, the session's prefill and "
        "decode token rates, peak memory and the KV cache of one batch, LoadGen's verdict; "
        "then the llama-bench summary of the batch-1 runs and the accuracy on real text."
    )
    return section("llm", "LLM runs", intro, "".join(blocks))


def _block(result: LlmResult, folder: str) -> str:
    warning = fallback_warning(result)
    flag = "" if warning is None else f"<p>{badge(warning, False).html}</p>"
    facts = [
        result.scenario,
        f"KV cache: {result.kv_cache}",
        f"compile {result.compile_s:.2f} s",
        coverage_text(result.coverage),
    ]
    precision = precision_text(result.precision)
    if precision is not None:
        facts.append(f"precision: {precision}")
    rows = [_run_row(run, folder) for run in result.runs]
    server = [_server_row(run) for run in result.runs if _judged(run)]
    tables = table(RUN_HEADERS, rows, range(12))
    if server:
        tables += "<h3>Server: constraints and goodput</h3>"
        tables += table(SERVER_HEADERS, server, (0, 1, 2))
    tables += "".join(
        f"<p><b>{esc(name)}</b>: {esc(text)}</p>" for name, text in bench_lines(result)
    )
    # beside the drift from the reference, which a precision the target chose changed
    heading = with_flag(
        "Accuracy on real text, against the reference", precision_flag(result.precision)
    )
    tables += f"<h3>{render(heading)}</h3>"
    tables += table(("measure", "value"), accuracy_fields(result.accuracy))
    head = f"<h3>{esc(label(result))}</h3>{note('; '.join(facts) + '.')}{flag}"
    return f"{head}{tables}{grid(_figures(result))}"


def _p50_p99(stats: LatencyStats | None) -> list[object]:
    """A token latency's p50 and p99; none in offline, which takes no first token."""
    return [None, None] if stats is None else [number(stats.p50), number(stats.p99)]


def _run_row(run: LlmRun, folder: str) -> list[object]:
    verdict = badge("VALID" if run.valid else "INVALID", run.valid).html
    notes = "".join(f"<br>{esc(text)}" for text in loadgen_notes(run))
    logs = run.loadgen.logs
    return [
        run.batch_size,
        run.prompt_len,
        run.gen_len,
        *_p50_p99(run.ttft_ms),
        *_p50_p99(run.tpot_ms),
        number(run.prefill_tokens_per_s),
        number(run.decode_tokens_per_s),
        number(run.tokens_per_s),
        number(mib(run.memory.peak_rss_bytes)),
        number(mib(run.memory.kv_cache_bytes)),
        Markup(f"{verdict} {esc(run.why)}{notes}"),
        log_links(logs, folder) if logs else None,
    ]


def _judged(run: LlmRun) -> bool:
    """Whether the run was judged against the server scenario's bounds."""
    return run.constraints is not None or run.goodput is not None


def _server_row(run: LlmRun) -> list[object]:
    constraints, goodput = run.constraints, run.goodput
    return [
        run.batch_size,
        run.prompt_len,
        run.gen_len,
        None if constraints is None else constraints_text(constraints),
        None if goodput is None else goodput_text(goodput),
    ]


@dataclass(frozen=True)
class _Chart:
    """A figure of the runs over batch size: its title, y axis, how a point's tooltip words
    its value ("{}" is the value), and where a run keeps it (None: not measured)."""

    title: str
    axis: str
    phrase: str
    value: Callable[[LlmRun], float | None]


CHARTS = (
    _Chart("TTFT p50", "TTFT p50 (ms)", "TTFT p50 {} ms", ttft_p50),
    _Chart("TPOT p50", "TPOT p50 (ms)", "TPOT p50 {} ms", tpot_p50),
    _Chart(
        "decode tokens/s",
        "decode tokens/s",
        "{} decode tokens/s",
        lambda run: run.decode_tokens_per_s,
    ),
)


def _figures(result: LlmResult) -> list[str]:
    """TTFT, TPOT and decode tokens/s over batch size; a chart with no value (TTFT and TPOT
    in offline) is left out."""
    name = label(result)
    figures = []
    for measured in CHARTS:
        series = _series(result, measured)
        if not series:
            continue
        title = f"{name}: {measured.title} by batch size"
        chart = line_chart(series, "batch size", measured.axis, title)
        caption = legend((s.label, s.color) for s in series) + note(
            "Filled points are VALID runs, hollow points INVALID (see the tooltip for why)."
        )
        figures.append(figure(title, chart, caption))
    return figures


def _series(result: LlmResult, measured: _Chart) -> list[Series]:
    """A line per prompt length (and generation length, where the result has several), its
    points the runs' values at each batch size; a line keeps its colour from chart to chart."""
    several_gens = len({run.gen_len for run in result.runs}) > 1

    def lengths(run: LlmRun) -> tuple[int, int]:
        return run.prompt_len, run.gen_len

    series = []
    ordered = sorted(result.runs, key=lambda run: (*lengths(run), run.batch_size))
    for index, ((prompt, gen), runs) in enumerate(groupby(ordered, lengths)):
        name = f"prompt {prompt}" + (f", gen {gen}" if several_gens else "")
        points = tuple(
            Point(run.batch_size, value, _tip(run, measured.phrase, value), run.valid)
            for run in runs
            if (value := measured.value(run)) is not None
        )
        if points:
            series.append(Series(name, color(index), points))
    return series


def _tip(run: LlmRun, phrase: str, value: float) -> str:
    verdict = "VALID" if run.valid else "INVALID"
    return f"{run_name(run)}: {phrase.format(number(value))}, {verdict} ({run.why})"


def perplexity_cell(accuracy: LlmAccuracy | None) -> Markup | None:
    """The summary's accuracy of an LLM result: its perplexity, with the verdict's badge."""
    if accuracy is None:
        return None
    passed = accuracy.passed
    verdict = "" if passed is None else badge("pass" if passed else "fail", passed).html
    value = f"perplexity {esc(number(accuracy.perplexity.value, 4))}"
    return Markup(f"{value} {verdict}".strip())
