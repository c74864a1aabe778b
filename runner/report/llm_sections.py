"""An LLM result in the terminal: its runs' token latencies and verdicts, token rates and
memory, the server's constraints and goodput, the llama-bench summary beside the anchor's,
and the accuracy on real text. Long text goes on lines of its own, so the tables stay
readable at 80 columns."""

from __future__ import annotations

from pathlib import Path

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from runner.report.llm_readings import (
    accuracy_fields,
    bench_lines,
    constraints_text,
    coverage_text,
    goodput_text,
    mib,
    run_name,
)
from runner.report.readings import (
    fallback_warning,
    loadgen_notes,
    logs_text,
    precision_flag,
    precision_suffix,
)
from runner.report.terminal import add_text_row, flagged, number_text, text_table
from runner.results.llm import LlmResult, LlmRun
from runner.results.model import LatencyStats

RUN_KEY = ("batch", "prompt", "gen")


def llm_header_fields(result: LlmResult) -> list[tuple[str, str]]:
    """What the header adds for an LLM result to what it shows of any model."""
    return [
        ("KV cache", result.kv_cache),
        ("compile", f"{result.compile_s:.2f} s"),
        ("coverage", coverage_text(result.coverage)),
    ]


def llm_renderables(result: LlmResult, folder: Path) -> list[RenderableType]:
    """The runs, the llama-bench summary and the accuracy; LoadGen's logs under `folder`."""
    shown = [*runs_summary(result, folder), *_lines(bench_lines(result))]
    return [*shown, _accuracy_table(result)]


def runs_summary(result: LlmResult, folder: Path) -> list[RenderableType]:
    """The token latencies with LoadGen's verdict, the token rates and memory, the server's
    constraints and goodput where it ran, each verdict's reasons with LoadGen's errors,
    warnings and logs (under `folder`, the result's), and a warning when work fell back to
    the reference path."""
    device = result.target_info.device
    title = f"LLM runs: {result.model} on {result.target} ({result.scenario}, {device})"
    title += precision_suffix(result.precision)
    latency = text_table(
        title,
        (*RUN_KEY, "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms", "verdict"),
    )
    rates = text_table(
        "token rates and memory",
        (
            *RUN_KEY,
            "prefill tokens/s",
            "decode tokens/s",
            "LoadGen tokens/s",
            "peak RSS MiB",
            "KV cache MiB",
        ),
    )
    reasons: list[RenderableType] = []
    for run in result.runs:
        key = (str(run.batch_size), str(run.prompt_len), str(run.gen_len))
        verdict = "VALID" if run.valid else "INVALID"
        add_text_row(
            latency,
            *key,
            *_p50_p99(run.ttft_ms),
            *_p50_p99(run.tpot_ms),
            verdict,
        )
        memory = run.memory
        add_text_row(
            rates,
            *key,
            f"{run.prefill_tokens_per_s:.1f}",
            f"{run.decode_tokens_per_s:.1f}",
            f"{run.tokens_per_s:.1f}",
            number_text(mib(memory.peak_rss_bytes), ".1f"),
            number_text(mib(memory.kv_cache_bytes), ".1f"),
        )
        name = run_name(run)
        reasons.append(Text(f"{name}: {verdict}: {run.why}"))
        reasons += [Text(f"{name}: {note}") for note in loadgen_notes(run)]
        if run.loadgen.logs:
            reasons.append(Text(f"{name}: LoadGen logs {logs_text(run.loadgen.logs, folder)}"))
    shown: list[RenderableType] = [latency, rates]
    server = _server_table(result.runs)
    if server is not None:
        shown.append(server)
    shown += reasons
    warning = fallback_warning(result)
    if warning is not None:
        shown.append(Text(warning, style="bold yellow"))
    return shown


def _p50_p99(stats: LatencyStats | None) -> tuple[str, str]:
    """A token latency's p50 and p99; "-" in offline, which takes no first token."""
    if stats is None:
        return "-", "-"
    return f"{stats.p50:.3f}", f"{stats.p99:.3f}"


def _server_table(runs: tuple[LlmRun, ...]) -> Table | None:
    """The server scenario's bounds and the requests that met them; None outside it."""
    judged = [run for run in runs if run.constraints is not None or run.goodput is not None]
    if not judged:
        return None
    table = text_table("server: constraints and goodput", (*RUN_KEY, "constraints", "goodput"))
    for run in judged:
        constraints, goodput = run.constraints, run.goodput
        add_text_row(
            table,
            str(run.batch_size),
            str(run.prompt_len),
            str(run.gen_len),
            "-" if constraints is None else constraints_text(constraints),
            "-" if goodput is None else goodput_text(goodput),
        )
    return table


def _lines(fields: list[tuple[str, str]]) -> list[RenderableType]:
    return [Text(f"{name}: {value}") for name, value in fields]


def _accuracy_table(result: LlmResult) -> Table:
    """The accuracy on real text against the reference, a measure per row; beside its title,
    the flag of a precision the target chose, which the drift from the reference includes."""
    flag = precision_flag(result.precision)
    title = flagged("accuracy on real text, against the reference", flag)
    table = text_table(title, ("measure", "value"))
    for name, value in accuracy_fields(result.accuracy):
        add_text_row(table, name, value)
    return table
