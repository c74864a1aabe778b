"""`runner report show`: one result document in the terminal, everything it records about what
ran, where, and what came out. `runner bench` prints its tables with the same functions, so a
result looks the same when it is measured and when it is read back."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from runner.report.llm_sections import llm_header_fields, llm_renderables
from runner.report.profile_terminal import profile_renderables
from runner.report.readings import (
    best_batch_rule,
    fallback_warning,
    latency_note,
    loadgen_notes,
    logs_text,
    precision_flag,
    precision_suffix,
    precision_text,
    result_folder,
    share_text,
    worst_cosine,
    worst_max_abs,
)
from runner.report.terminal import add_text_row, flagged, number_text, text_table
from runner.results.document import Environment, GitRevision, Host, ThreadSettings
from runner.results.files import Result
from runner.results.llm import LlmResult
from runner.results.model import AccuracyRecord, AuditedPass, DriftRecord, ModelResult
from runner.results.op import CaseNotRunRecord, OpResult, RooflineRecord, TimingPolicyRecord
from runner.results.profile import ProfileResult

_MIGRATION_NOTES = {  # by the version a document was upgraded from
    "1": "read from schema version 1: no raw latencies/environment recorded",
    "asicperf.op-bench/1": "read from schema version 1: no environment recorded",
    "2": "read from schema version 2",
    "3": "read from schema version 3",
}
_SHORT_REVISION = 12


def show_renderables(result: Result, source: str) -> list[RenderableType]:
    """The header (what ran, where), then the measurements of the result's kind; `source` is
    the result.json or its folder, which the paths of LoadGen's logs are shown under."""
    if isinstance(result, ModelResult):
        body = model_renderables(result, result_folder(source))
    elif isinstance(result, LlmResult):
        body = llm_renderables(result, result_folder(source))
        if result.audit is not None:
            body.append(_audit_table(result.audit.passes))
    elif isinstance(result, ProfileResult):
        body = profile_renderables(result)
    else:
        body = op_renderables(result)
    return [*header_renderables(result, source), *body]


def header_renderables(result: Result, source: str) -> list[RenderableType]:
    """The title, the migration note of an upgraded document, and a field: value grid."""
    title = Text(f"{result.KIND} result {source}", style="bold")
    shown: list[RenderableType] = [title]
    if result.migrated_from:
        shown.append(Text(_MIGRATION_NOTES[result.migrated_from], style="yellow"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in _header_fields(result):
        grid.add_row(name, Text(value))
    shown.append(grid)
    return shown


def model_renderables(result: ModelResult, folder: Path) -> list[RenderableType]:
    """Batches, accuracy, drift against the reference and the audit of the pipeline; LoadGen's
    logs under `folder`, the result's."""
    shown = [*batch_summary(result, folder), Text(_accuracy_line(result.accuracy))]
    if result.accuracy is not None and result.accuracy.logs:
        shown.append(Text(f"accuracy: LoadGen logs {logs_text(result.accuracy.logs, folder)}"))
    if result.drift.outputs:
        shown.append(_drift_table(result.drift, precision_flag(result.precision)))
    if result.audit is not None:
        shown.append(_audit_table(result.audit.passes))
    return shown


def batch_summary(result: ModelResult, folder: Path) -> list[RenderableType]:
    """What `runner bench` prints: the headline table (throughput, latency, coverage, verdict),
    a details table, each verdict's reasons with LoadGen's errors and warnings, where its logs
    are (under `folder`, the result's), a warning when work fell back to the reference path,
    and the best batch size with why each other one was not chosen. Long text goes on lines
    of its own, so the tables stay readable at 80 columns."""
    device = result.target_info.device
    title = f"bench {result.model} on {result.target} ({result.scenario}, {device})"
    title += precision_suffix(result.precision)
    headline = text_table(
        title,
        ("batch", "samples/s", "p50 ms", "p99 ms", "nodes on target", "FLOPs on target", "verdict"),
    )
    details = text_table(
        "details",
        ("batch", "mean ms", "p90 ms", "p99 ms per batch", "queries", "compile s", "max |Δ|"),
    )
    reasons: list[RenderableType] = []
    for batch in result.batches:
        size = str(batch.batch_size)
        latency = batch.latency_ms
        coverage = batch.coverage
        verdict = "VALID" if batch.valid else "INVALID"
        add_text_row(
            headline,
            size,
            f"{batch.qps:.1f}",
            f"{latency.p50:.3f}",
            f"{latency.p99:.3f}",
            share_text(None if coverage is None else coverage.node_coverage),
            share_text(None if coverage is None else coverage.flop_coverage),
            verdict,
        )
        drift = worst_max_abs(batch.drift.outputs) or 0.0
        add_text_row(
            details,
            size,
            f"{latency.mean:.3f}",
            f"{latency.p90:.3f}",
            number_text(None if batch.batch_ms is None else batch.batch_ms.p99, ".3f"),
            str(batch.queries),
            number_text(batch.compile_s, ".2f"),
            flagged(f"{drift:.3g}", precision_flag(batch.precision)),
        )
        reasons.append(Text(f"batch {size}: {verdict}: {batch.why}"))
        reasons += [Text(f"batch {size}: {note}") for note in loadgen_notes(batch)]
        if batch.loadgen is not None and batch.loadgen.logs:
            logs = logs_text(batch.loadgen.logs, folder)
            reasons.append(Text(f"batch {size}: LoadGen logs {logs}"))
    shown: list[RenderableType] = [headline, details]
    note = latency_note(result)
    if note is not None:
        shown.append(Text(note))
    shown += reasons
    warning = fallback_warning(result)
    if warning is not None:
        shown.append(Text(warning, style="bold yellow"))
    return [*shown, *_best_batch_lines(result)]


def _best_batch_lines(result: ModelResult) -> list[Text]:
    """The best batch size under the rule that chose it, and why each other one was not."""
    best = result.best_batch
    if result.batch_choice is None:  # a result written before the choice was recorded
        return [Text(f"best batch size: {'none meets the rules' if best is None else best}")]
    verdict = "none meets the rules" if best is None else str(best)
    lines = [Text(f"best batch size: {verdict} (rule: {best_batch_rule(result)})")]
    lines += [
        Text(f"  batch {item.batch_size}: {item.reason}")
        for item in result.batch_choice
        if item.batch_size != best
    ]
    return lines


def op_renderables(result: OpResult) -> list[RenderableType]:
    """Cases, the rooflines they are placed under, and the cases that did not run."""
    shown: list[RenderableType] = [_cases_table(result)]
    shown += [_roofline_table(name, roof) for name, roof in result.rooflines.items()]
    for group in unsupported_groups(result.unsupported):
        shown.append(Text(f"not supported: {group}"))
    for failure in result.failed:
        shown.append(
            Text(
                f"FAILED {failure.op}/{failure.dtype or '?'}/{failure.shape or '?'} "
                f"on {failure.provider}: {failure.reason}"
            )
        )
    return shown


def _header_fields(result: Result) -> list[tuple[str, str]]:
    environment = result.environment
    if isinstance(result, ModelResult | LlmResult):
        info = result.target_info
        precision = precision_text(result.precision)
        fields = [
            ("model", f"{result.model} ({result.ir_fingerprint})"),
            ("target", _joined(result.target, info.version, info.device)),
            *([] if precision is None else [("precision", precision)]),
            ("hardware", info.hardware or "-"),
            ("pipeline", _pipeline_text(result)),
            ("scenario", result.scenario),
        ]
        if isinstance(result, LlmResult):
            fields += llm_header_fields(result)
    elif isinstance(result, ProfileResult):
        info = result.target_info
        fields = [
            ("model", f"{result.model} ({result.ir_fingerprint})"),
            ("target", _joined(result.target, info.version, info.device)),
            ("pipeline", _pipeline_text(result)),
            ("batch", f"{result.batch_size}, {result.runs} runs"),
            ("profilers", ", ".join(result.profilers)),
        ]
    else:
        fields = [("suite", result.suite), ("policy", _policy(result.policy))]
    return fields + _environment_fields(result.created, environment)


def _environment_fields(created: str | None, environment: Environment) -> list[tuple[str, str]]:
    git, command, seed = environment.git, environment.command, environment.seed
    return [
        ("created", created or "-"),
        ("git", "-" if git is None else revision_text(git)),
        ("command", "-" if command is None else shlex.join(command)),
        ("seed", "-" if seed is None else str(seed)),
        ("host", _host(environment.host)),
        ("gpus", ", ".join(environment.gpus) or "none"),
        ("os", environment.os or "-"),
        ("python", environment.python or "-"),
        ("packages", _packages(environment.packages)),
        ("threads", _thread_settings(environment.threads)),
    ]


def _pipeline_text(result: ModelResult | LlmResult | ProfileResult) -> str:
    """The pipeline as given, and as resolved for the target where that differs."""
    given, resolved = result.pipeline, result.resolved_pipeline
    if not given:
        return "none"
    return given if resolved in (None, given) else f"{given} (resolved: {resolved})"


def revision_text(git: GitRevision) -> str:
    """The short commit, marked when the tree had local changes."""
    return git.revision[:_SHORT_REVISION] + (" (dirty)" if git.dirty else "")


def _host(host: Host) -> str:
    counts = []
    if host.cores is not None:
        counts.append(f"{host.cores} cores")
    if host.threads is not None:
        counts.append(f"{host.threads} threads")
    if host.memory_gib is not None:
        counts.append(f"{host.memory_gib} GiB")
    return host.cpu + (f" ({', '.join(counts)})" if counts else "")


def _packages(packages: Mapping[str, str | None]) -> str:
    return ", ".join(f"{name} {v}" for name, v in packages.items() if v is not None) or "-"


def _thread_settings(threads: ThreadSettings | None) -> str:
    if threads is None:
        return "-"
    settings = [f"{name}={value}" for name, value in threads.env.items() if value is not None]
    return _joined(f"{threads.cpu_count} CPUs", ", ".join(settings) or None)


def _policy(policy: TimingPolicyRecord) -> str:
    parts = [
        f"{_or(policy.min_time_s, '?')}..{_or(policy.max_time_s, '?')} s per case",
        f"target noise {_or(policy.target_noise, '?')}",
    ]
    if policy.flush_cache_bytes:
        parts.append(f"caches flushed ({policy.flush_cache_bytes / 2**20:.0f} MiB)")
    return ", ".join(parts)


def _or(value: float | None, missing: str) -> str:
    """`value` as text, or `missing` where the document did not record it."""
    return missing if value is None else str(value)


def _accuracy_line(accuracy: AccuracyRecord | None) -> str:
    if accuracy is None:
        return "accuracy: not measured"
    verdict = "passed" if accuracy.passed else "FAILED"
    on = f" on {accuracy.samples} samples" if accuracy.samples is not None else ""
    return (
        f"accuracy: {accuracy.metric} {number_text(accuracy.value, '.4f')}{on} "
        f"(threshold {accuracy.threshold}, {verdict})"
    )


def _drift_table(drift: DriftRecord, flag: str | None) -> Table:
    """Every output's drift; `flag` (a precision the target chose) beside the title."""
    at = f" at batch {drift.batch_size}" if drift.batch_size is not None else ""
    table = text_table(
        flagged(f"drift against the reference{at}", flag),
        ("output", "max abs", "mean abs", "max rel", "cosine", "top-1 agreement"),
    )
    for output in drift.outputs:
        add_text_row(
            table,
            str(output.index),
            number_text(output.max_abs, ".3g"),
            number_text(output.mean_abs, ".3g"),
            number_text(output.max_rel, ".3g"),
            number_text(output.cosine, ".7f"),
            number_text(output.top1_agreement, ".4f"),
        )
    return table


def _audit_table(passes: Sequence[AuditedPass]) -> Table:
    table = text_table(
        "pipeline audit",
        ("#", "pass", "modified", "nodes", "wall ms", "max abs vs input", "cosine vs input"),
    )
    for record in passes:
        vs_input = () if record.numeric is None else record.numeric.vs_input
        max_abs, cosine = worst_max_abs(vs_input), worst_cosine(vs_input)
        add_text_row(
            table,
            _or(record.seq, "-"),
            record.pass_name,
            "yes" if record.modified else "no",
            f"{_or(record.nodes_before, '?')} → {_or(record.nodes_after, '?')}",
            number_text(record.wall_ms, ".3f"),
            number_text(max_abs, ".3g"),
            number_text(cosine, ".7f"),
        )
    return table


def _cases_table(result: OpResult) -> Table:
    table = text_table(
        f"op benchmarks: suite {result.suite}",
        ("op", "dtype", "shape", "provider", "median µs", "p10..p90 µs"),
    )
    for column in ("GFLOP/s", "GB/s", "FLOP/B", "bound", "% peak", "noise"):
        table.add_column(column, justify="right")
    for case in result.cases:
        latency = case.latency_us
        noise = number_text(case.noise, ".1%") + (" noisy" if case.noisy else "")
        add_text_row(
            table,
            case.op,
            case.dtype,
            case.shape,
            case.provider,
            f"{latency.median:.1f}",
            f"{latency.p10:.1f}..{latency.p90:.1f}",
            f"{case.gflops:.1f}",
            f"{case.gbps:.1f}",
            f"{case.intensity:.2f}",
            case.bound or "-",
            number_text(case.peak_fraction, ".0%"),
            noise,
        )
    return table


def unsupported_groups(entries: Iterable[CaseNotRunRecord]) -> list[str]:
    """Unsupported cases as one line per provider and reason, naming the ops and dtypes."""
    groups: dict[tuple[str, str], dict[str, None]] = {}
    for entry in entries:
        key = (entry.provider, entry.reason)
        groups.setdefault(key, {})[f"{entry.op} {entry.dtype or '?'}"] = None
    return [
        f"{provider} lacks {', '.join(cases)} ({reason})"
        for (provider, reason), cases in groups.items()
    ]


def _roofline_table(hardware: str, roofline: RooflineRecord) -> Table:
    """The ceilings a case's bound and % peak are measured against, with where each came
    from (the host's units and clock, or a datasheet), then what libraries achieve there."""
    table = text_table(
        f"roofline of {hardware} ({roofline.device})", ("ceiling", "value", "source")
    )
    for dtype, ceiling in roofline.compute_gflops.items():
        add_text_row(table, dtype, f"{ceiling.value:.0f} {_rate(dtype)}", ceiling.source)
    bandwidth = roofline.bandwidth_gbs
    if bandwidth:
        add_text_row(table, "memory", f"{bandwidth.value:.1f} GB/s", bandwidth.source)
    achievable = roofline.achievable
    if achievable is not None:
        for dtype, ceiling in achievable.compute_gflops.items():
            value = f"{ceiling.value:.0f} {_rate(dtype)}"
            add_text_row(table, f"{dtype} achievable", value, ceiling.source)
        measured = achievable.bandwidth_gbs
        if measured:
            add_text_row(table, "memory achievable", f"{measured.value:.1f} GB/s", measured.source)
    if roofline.cache_bytes:
        size = f"{roofline.cache_bytes / 2**20:.0f} MiB"
        add_text_row(table, "cache", size, "a working set that fits is cache-bound")
    return table


def _rate(dtype: str) -> str:
    """Integer throughput counts operations, floating point FLOPs."""
    return "GOP/s" if dtype.startswith("int") else "GFLOP/s"


def _joined(*parts: str | None) -> str:
    return ", ".join(part for part in parts if part)
