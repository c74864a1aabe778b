"""What the report reads off a result: its label, worst drift, latency spread, coverage, where
it ran, and LoadGen's notes and logs; one place, so every section names and measures a result
alike."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path

from runner.bench.results import bounded_latency
from runner.bench.stats import percentile
from runner.report.charts import Distribution
from runner.results.files import Result
from runner.results.llm import LlmResult, LlmRun
from runner.results.model import (
    BatchResult,
    Coverage,
    ModelResult,
    OutputDriftRecord,
    PrecisionRecord,
)
from runner.results.op import OpResult
from targets.precision_choice import PrecisionChoice


def label(result: Result) -> str:
    """`model · target · pipeline` for a model or LLM result, `suite · providers` for an op
    result."""
    if isinstance(result, OpResult):
        return f"{result.suite} · {', '.join(result.providers())}"
    pipeline = result.pipeline or "no passes"
    return f"{result.model} · {result.target_info.name} · {pipeline}"


def worst_cosine(outputs: Sequence[OutputDriftRecord]) -> float | None:
    """The lowest cosine similarity over a drift record's outputs."""
    cosines = [o.cosine for o in outputs if o.cosine is not None]
    return min(cosines) if cosines else None


def worst_max_abs(outputs: Sequence[OutputDriftRecord]) -> float | None:
    """The largest absolute difference over a drift record's outputs."""
    values = [o.max_abs for o in outputs if o.max_abs is not None]
    return max(values) if values else None


def where(result: Result) -> str:
    """CPU, git revision (short, `+dirty` when the tree had changes) and creation time."""
    environment = result.environment
    git = environment.git
    revision = "no git" if git is None else git.revision[:10] + ("+dirty" if git.dirty else "")
    created = result.created or "unknown time"
    return f"{environment.host.cpu}; {revision}; {created}"


def distribution(name: str, samples: Sequence[float]) -> Distribution:
    """The spread of raw samples, nearest-rank percentiles as the benchmark reports them."""
    ordered = sorted(samples)
    p = {q: percentile(ordered, q) for q in (10, 25, 50, 75, 90, 99)}
    return Distribution(
        label=name,
        minimum=ordered[0],
        median=p[50],
        maximum=ordered[-1],
        p10=p[10],
        p25=p[25],
        p75=p[75],
        p90=p[90],
        p99=p[99],
        count=len(ordered),
        raw=True,
    )


def batch_distribution(batch: BatchResult) -> Distribution:
    """Raw latencies when the result kept them; its summary statistics otherwise."""
    name = f"batch {batch.batch_size}"
    if batch.latencies_ms:
        return distribution(name, batch.latencies_ms)
    stats = batch.latency_ms
    return Distribution(
        label=name,
        minimum=stats.p50 if stats.min is None else stats.min,
        median=stats.p50,
        maximum=stats.p99 if stats.max is None else stats.max,
        p10=None,
        p25=None,
        p75=None,
        p90=stats.p90,
        p99=stats.p99,
        count=batch.queries,
        raw=False,
    )


def share_text(share: float | None) -> str:
    """A coverage share as a percentage, never rounded up to a full 100%: "0.45%", "99.5%",
    ">99.9%", "100%"; "-" where it is unknown (no node with a known FLOP count, or a result
    written before coverage was recorded)."""
    if share is None:
        return "-"
    text = f"{100 * share:.3g}%"
    return ">99.9%" if share < 1 and text == "100%" else text


def fallback_warning(result: ModelResult | LlmResult) -> str | None:
    """What ran on the reference fallback path instead of the target, per batch size (for an
    LLM result, of its one decoder); None when everything ran on the target (or the result
    did not record coverage)."""
    if isinstance(result, LlmResult):
        coverage = result.coverage
        parts = [_fallback_share(coverage)] if coverage.fallback_nodes else []
    else:
        parts = [
            f"batch {batch.batch_size}: {_fallback_share(batch.coverage)}"
            for batch in result.batches
            if batch.coverage is not None and batch.coverage.fallback_nodes
        ]
    if not parts:
        return None
    target = result.target_info.name
    return (
        f"WARNING: work ran on the reference fallback path, not on {target}, so these figures "
        f"measure it in part: {'; '.join(parts)}"
    )


def _fallback_share(coverage: Coverage) -> str:
    flop_share = coverage.flop_coverage
    flops = "" if flop_share is None else f", {share_text(1 - flop_share)} of FLOPs"
    return f"{coverage.fallback_nodes} of {coverage.nodes} nodes{flops}"


def precision_flag(precision: PrecisionRecord | None) -> str | None:
    """What goes beside a run's drift when the target changed its precision on its own
    ("vendor default: bfloat16") or ignored the one asked ("asked float16, ran float32");
    None otherwise, and where the target recorded no precision."""
    return None if precision is None else _choice(precision).flag


def precision_text(precision: PrecisionRecord | None) -> str | None:
    """The precision a run computed in and who chose it, "bfloat16 (target default)"; None
    where the target recorded none."""
    return None if precision is None else _choice(precision).description


def precision_suffix(precision: PrecisionRecord | None) -> str:
    """What a run's title adds where the target recorded its precision: " in bfloat16
    (target default)"."""
    text = precision_text(precision)
    return "" if text is None else f" in {text}"


def _choice(precision: PrecisionRecord) -> PrecisionChoice:
    """The record as the target's own type, so the report words it as the target does."""
    return PrecisionChoice.from_json(precision.to_json())


def best_batch_rule(result: ModelResult) -> str:
    """The rule the best batch size was chosen by, with the result's latency bound."""
    bound = result.latency_bound_ms
    latency = bounded_latency(result.scenario)
    within = "no latency bound" if bound is None else f"{latency} ≤ {bound:g} ms"
    return f"VALID, {within}, the most samples/s"


def latency_note(result: ModelResult) -> str | None:
    """What an offline result's latencies mean, which is not what they mean elsewhere."""
    if result.scenario != "offline":
        return None
    return (
        "offline: LoadGen times every sample from the start of its one query, so its latencies "
        "span the run; the latency bound holds the session's p99 per batch"
    )


def loadgen_notes(batch: BatchResult | LlmRun) -> list[str]:
    """LoadGen's errors and warnings on a batch size's (or an LLM run's) run; an error already
    among the verdict's reasons (LoadGen's errors make a run INVALID) is not repeated."""
    if batch.loadgen is None:
        return []
    errors = [f"LoadGen error: {e}" for e in batch.loadgen.errors if e not in batch.why]
    return errors + [f"LoadGen warning: {w}" for w in batch.loadgen.warnings]


def result_folder(source: str | Path) -> Path:
    """The folder of a result named by its result.json or its folder: the folder its log
    paths are relative to."""
    path = Path(source)
    return path if path.is_dir() else path.parent


def log_groups(logs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Log paths (relative, "/"-separated) by folder, in order: ("loadgen/batch-1",
    ["mlperf_log_summary.txt", "mlperf_log_detail.txt"])."""
    groups: dict[str, list[str]] = {}
    for log in logs:
        folder, name = posixpath.split(log)
        groups.setdefault(folder, []).append(name)
    return list(groups.items())


def logs_text(logs: Sequence[str], folder: Path) -> str:
    """ "in DIR: a.txt, b.txt" per folder of logs, DIR under the result's `folder`."""
    return "; ".join(
        f"in {folder / where}: {', '.join(names)}" for where, names in log_groups(logs)
    )
