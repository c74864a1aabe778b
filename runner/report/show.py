"""`runner report show`: one result document in the terminal, everything it records about what
ran, where, and what came out. `runner bench` prints its tables with the same functions, so a
result looks the same when it is measured and when it is read back."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from runner.report.readings import (
    best_batch_rule,
    fallback_warning,
    share_text,
    worst_cosine,
    worst_max_abs,
)

_MIGRATION_NOTES = {
    "model": "read from schema version 1: no raw latencies/environment recorded",
    "op": "read from schema version 1: no environment recorded",
}
_SHORT_REVISION = 12


def show_renderables(document: dict[str, Any], source: str) -> list[RenderableType]:
    """The header (what ran, where), then the measurements of the document's kind."""
    body = model_renderables if document["kind"] == "model" else op_renderables
    return [*header_renderables(document, source), *body(document)]


def header_renderables(document: Mapping[str, Any], source: str) -> list[RenderableType]:
    """The title, the migration note of an upgraded document, and a field: value grid."""
    title = Text(f"{document['kind']} result {source}", style="bold")
    shown: list[RenderableType] = [title]
    if document.get("migrated_from"):
        shown.append(Text(_MIGRATION_NOTES[document["kind"]], style="yellow"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in _header_fields(document):
        grid.add_row(name, Text(value))
    shown.append(grid)
    return shown


def model_renderables(document: Mapping[str, Any]) -> list[RenderableType]:
    """Batches, accuracy, drift against the reference and the audit of the pipeline."""
    shown = [*batch_summary(document), Text(_accuracy_line(document["accuracy"]))]
    if document["drift"]["outputs"]:
        shown.append(_drift_table(document["drift"]))
    if document["audit"] is not None:
        shown.append(_audit_table(document["audit"]["passes"]))
    return shown


def batch_summary(document: Mapping[str, Any]) -> list[RenderableType]:
    """What `runner bench` prints: the headline table (throughput, latency, coverage, verdict),
    a details table, each verdict's reasons, a warning when work fell back to the reference
    path, and the best batch size with why each other one was not chosen. Long text goes on
    lines of its own, so the tables stay readable at 80 columns."""
    device = document["target_info"]["device"]
    title = f"bench {document['model']} on {document['target']} ({document['scenario']}, {device})"
    headline = _table(
        title,
        ("batch", "samples/s", "p50 ms", "p99 ms", "nodes on target", "FLOPs on target", "verdict"),
    )
    details = _table("details", ("batch", "mean ms", "p90 ms", "queries", "compile s", "max |Δ|"))
    reasons: list[RenderableType] = []
    for batch in document["batches"]:
        size = str(batch["batch_size"])
        latency = batch["latency_ms"]
        coverage = batch.get("coverage") or {}
        verdict = "VALID" if batch["valid"] else "INVALID"
        _add_row(
            headline,
            size,
            f"{batch['qps']:.1f}",
            f"{latency['p50']:.3f}",
            f"{latency['p99']:.3f}",
            share_text(coverage.get("node_coverage")),
            share_text(coverage.get("flop_coverage")),
            verdict,
        )
        drift = max((d["max_abs"] for d in batch["drift"]["outputs"]), default=0.0)
        _add_row(
            details,
            size,
            f"{latency['mean']:.3f}",
            f"{latency['p90']:.3f}",
            str(batch["queries"]),
            number_text(batch.get("compile_s"), ".2f"),
            f"{drift:.3g}",
        )
        reasons.append(Text(f"batch {size}: {verdict}: {batch['why']}"))
    shown: list[RenderableType] = [headline, details, *reasons]
    warning = fallback_warning(document)
    if warning is not None:
        shown.append(Text(warning, style="bold yellow"))
    return [*shown, *_best_batch_lines(document)]


def _best_batch_lines(document: Mapping[str, Any]) -> list[Text]:
    """The best batch size under the rule that chose it, and why each other one was not."""
    best = document["best_batch"]
    choice = document.get("batch_choice")
    if choice is None:  # a result written before the choice was recorded
        return [Text(f"best batch size: {'none meets the rules' if best is None else best}")]
    verdict = "none meets the rules" if best is None else str(best)
    lines = [Text(f"best batch size: {verdict} (rule: {best_batch_rule(document)})")]
    lines += [
        Text(f"  batch {item['batch_size']}: {item['reason']}")
        for item in choice
        if item["batch_size"] != best
    ]
    return lines


def op_renderables(document: Mapping[str, Any]) -> list[RenderableType]:
    """Cases, the rooflines they are placed under, and the cases that did not run."""
    shown: list[RenderableType] = [_cases_table(document)]
    shown += [_roofline_table(name, roof) for name, roof in document["rooflines"].items()]
    for group in unsupported_groups(document["unsupported"]):
        shown.append(Text(f"not supported: {group}"))
    for failure in document["failed"]:
        shown.append(
            Text(
                f"FAILED {failure['op']}/{failure.get('dtype', '?')}/{failure.get('shape', '?')} "
                f"on {failure['provider']}: {failure['reason']}"
            )
        )
    return shown


def _header_fields(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    environment = document["environment"]
    if document["kind"] == "model":
        info = document["target_info"]
        fields = [
            ("model", f"{document['model']} ({document['ir_fingerprint']})"),
            ("target", _joined(document["target"], info["version"], info["device"])),
            ("hardware", info["hardware"] or "-"),
            ("pipeline", _pipeline_text(document)),
            ("scenario", document["scenario"]),
        ]
    else:
        fields = [("suite", document["suite"]), ("policy", _policy(document["policy"]))]
    git = environment["git"]
    command = environment["command"]
    fields += [
        ("created", document["created"] or "-"),
        ("git", "-" if git is None else revision_text(git)),
        ("command", "-" if command is None else shlex.join(command)),
        ("seed", "-" if environment["seed"] is None else str(environment["seed"])),
        ("host", _host(environment["host"])),
        ("gpus", ", ".join(environment["gpus"]) or "none"),
        ("os", environment["os"] or "-"),
        ("python", environment["python"] or "-"),
        ("packages", _packages(environment["packages"])),
        ("threads", _thread_settings(environment["threads"])),
    ]
    return fields


def _pipeline_text(document: Mapping[str, Any]) -> str:
    """The pipeline as given, and as resolved for the target where that differs."""
    given, resolved = document["pipeline"], document.get("resolved_pipeline")
    if not given:
        return "none"
    return given if resolved in (None, given) else f"{given} (resolved: {resolved})"


def revision_text(git: Mapping[str, Any]) -> str:
    """The short commit, marked when the tree had local changes."""
    return git["revision"][:_SHORT_REVISION] + (" (dirty)" if git["dirty"] else "")


def _host(host: Mapping[str, Any]) -> str:
    counts = []
    if host["cores"] is not None:
        counts.append(f"{host['cores']} cores")
    if host["threads"] is not None:
        counts.append(f"{host['threads']} threads")
    if host.get("memory_gib") is not None:
        counts.append(f"{host['memory_gib']} GiB")
    return host["cpu"] + (f" ({', '.join(counts)})" if counts else "")


def _packages(packages: Mapping[str, str | None]) -> str:
    return ", ".join(f"{name} {v}" for name, v in packages.items() if v is not None) or "-"


def _thread_settings(threads: Mapping[str, Any] | None) -> str:
    if threads is None:
        return "-"
    settings = [f"{name}={value}" for name, value in threads["env"].items() if value is not None]
    return _joined(f"{threads['cpu_count']} CPUs", ", ".join(settings) or None)


def _policy(policy: Mapping[str, Any]) -> str:
    parts = [
        f"{policy.get('min_time_s', '?')}..{policy.get('max_time_s', '?')} s per case",
        f"target noise {policy.get('target_noise', '?')}",
    ]
    if policy.get("flush_cache_bytes"):
        parts.append(f"caches flushed ({policy['flush_cache_bytes'] / 2**20:.0f} MiB)")
    return ", ".join(parts)


def _accuracy_line(accuracy: Mapping[str, Any] | None) -> str:
    if accuracy is None:
        return "accuracy: not measured"
    verdict = "passed" if accuracy.get("passed") else "FAILED"
    samples = accuracy.get("samples")
    on = f" on {samples} samples" if samples is not None else ""
    return (
        f"accuracy: {accuracy['metric']} {number_text(accuracy.get('value'), '.4f')}{on} "
        f"(threshold {accuracy.get('threshold')}, {verdict})"
    )


def _drift_table(drift: Mapping[str, Any]) -> Table:
    at = f" at batch {drift['batch_size']}" if drift.get("batch_size") is not None else ""
    table = _table(
        f"drift against the reference{at}",
        ("output", "max abs", "mean abs", "max rel", "cosine", "top-1 agreement"),
    )
    for output in drift["outputs"]:
        _add_row(
            table,
            str(output["index"]),
            number_text(output.get("max_abs"), ".3g"),
            number_text(output.get("mean_abs"), ".3g"),
            number_text(output.get("max_rel"), ".3g"),
            number_text(output.get("cosine"), ".7f"),
            number_text(output.get("top1_agreement"), ".4f"),
        )
    return table


def _audit_table(passes: Sequence[Mapping[str, Any]]) -> Table:
    table = _table(
        "pipeline audit",
        ("#", "pass", "modified", "nodes", "wall ms", "max abs vs input", "cosine vs input"),
    )
    for record in passes:
        vs_input = (record["numeric"] or {}).get("vs_input") or []
        max_abs, cosine = worst_max_abs(vs_input), worst_cosine(vs_input)
        _add_row(
            table,
            str(record.get("seq", "-")),
            record["pass"],
            "yes" if record["modified"] else "no",
            f"{record.get('nodes_before', '?')} → {record.get('nodes_after', '?')}",
            number_text(record.get("wall_ms"), ".3f"),
            number_text(max_abs, ".3g"),
            number_text(cosine, ".7f"),
        )
    return table


def _cases_table(document: Mapping[str, Any]) -> Table:
    table = _table(
        f"op benchmarks: suite {document['suite']}",
        ("op", "dtype", "shape", "provider", "median µs", "p10..p90 µs"),
    )
    for column in ("GFLOP/s", "GB/s", "FLOP/B", "bound", "% peak", "noise"):
        table.add_column(column, justify="right")
    for case in document["cases"]:
        latency = case["latency_us"]
        noise = number_text(case.get("noise"), ".1%") + (" noisy" if case["noisy"] else "")
        _add_row(
            table,
            case["op"],
            case["dtype"],
            case["shape"],
            case["provider"],
            f"{latency['median']:.1f}",
            f"{latency['p10']:.1f}..{latency['p90']:.1f}",
            f"{case['gflops']:.1f}",
            f"{case['gbps']:.1f}",
            f"{case['intensity']:.2f}",
            case["bound"] or "-",
            number_text(case["peak_fraction"], ".0%"),
            noise,
        )
    return table


def unsupported_groups(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """Unsupported cases as one line per provider and reason, naming the ops and dtypes."""
    groups: dict[tuple[str, str], dict[str, None]] = {}
    for entry in entries:
        key = (entry["provider"], entry["reason"])
        groups.setdefault(key, {})[f"{entry['op']} {entry.get('dtype', '?')}"] = None
    return [
        f"{provider} lacks {', '.join(cases)} ({reason})"
        for (provider, reason), cases in groups.items()
    ]


def _roofline_table(hardware: str, roofline: Mapping[str, Any]) -> Table:
    """The ceilings a case's bound and % peak are measured against, with where each came
    from (the host's units and clock, or a datasheet), then what libraries achieve there."""
    table = _table(f"roofline of {hardware} ({roofline['device']})", ("ceiling", "value", "source"))
    for dtype, ceiling in roofline["compute_gflops"].items():
        _add_row(table, dtype, f"{ceiling['value']:.0f} {_rate(dtype)}", ceiling["source"])
    bandwidth = roofline.get("bandwidth_gbs")
    if bandwidth:
        _add_row(table, "memory", f"{bandwidth['value']:.1f} GB/s", bandwidth["source"])
    achievable = roofline.get("achievable") or {}
    for dtype, ceiling in (achievable.get("compute_gflops") or {}).items():
        value = f"{ceiling['value']:.0f} {_rate(dtype)}"
        _add_row(table, f"{dtype} achievable", value, ceiling["source"])
    if achievable.get("bandwidth_gbs"):
        measured = achievable["bandwidth_gbs"]
        _add_row(table, "memory achievable", f"{measured['value']:.1f} GB/s", measured["source"])
    if roofline.get("cache_bytes"):
        size = f"{roofline['cache_bytes'] / 2**20:.0f} MiB"
        _add_row(table, "cache", size, "a working set that fits is cache-bound")
    return table


def _rate(dtype: str) -> str:
    """Integer throughput counts operations, floating point FLOPs."""
    return "GOP/s" if dtype.startswith("int") else "GFLOP/s"


def _table(title: str, columns: Sequence[str]) -> Table:
    table = Table(title=Text(title))
    for column in columns:
        table.add_column(Text(column))
    return table


def _add_row(table: Table, *cells: str) -> None:
    """Cells as plain text: a reason or a name in brackets is not rich markup."""
    table.add_row(*(Text(cell) for cell in cells))


def number_text(value: float | None, spec: str) -> str:
    """`value` formatted, or "-" where it was not measured or not recorded."""
    return "-" if value is None else format(value, spec)


def _joined(*parts: str | None) -> str:
    return ", ".join(part for part in parts if part)
