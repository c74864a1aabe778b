"""Bench results: one record per batch size, written as soon as it is measured so an
interrupted run keeps what it finished, and the choice of the best batch size under the
latency bound, which asicperf adds on top of LoadGen's verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runner.bench.part_files import read_part, write_part
from runner.bench.run_key import RunKey
from runner.results.model import BatchChoice, BatchResult, Coverage
from targets.partition import PartitionPlan


def coverage_of(plan: PartitionPlan) -> Coverage:
    """The share of the compiled model that `plan` puts on the target."""
    return Coverage(
        nodes=sum(len(segment.nodes) for segment in plan.segments),
        fallback_nodes=len(plan.unsupported),
        node_coverage=plan.node_coverage,
        flop_coverage=plan.flop_coverage,
    )


def bounded_latency(scenario: str) -> str:
    """The name of the latency a batch size is held to the bound by (see `bounded_p99_ms`)."""
    return "p99 per batch" if scenario == "offline" else "p99"


def bounded_p99_ms(batch: BatchResult, scenario: str) -> float:
    """LoadGen's p99, except offline: LoadGen counts an offline sample's latency from the start
    of its one query, so its p99 is about the whole run; there the bound holds the session's
    p99 time per batch (the SUT's clock), what one batch of that size takes to come back."""
    if scenario == "offline" and batch.batch_ms is not None:
        return batch.batch_ms.p99
    return batch.latency_ms.p99


def best_batch(
    batches: Sequence[BatchResult], latency_bound_ms: float | None, scenario: str
) -> int | None:
    """The VALID batch size with the highest QPS whose p99 meets the bound (if there is one)."""
    fitting = [
        b
        for b in batches
        if b.valid and (latency_bound_ms is None or bounded_p99_ms(b, scenario) <= latency_bound_ms)
    ]
    return max(fitting, key=lambda b: b.qps).batch_size if fitting else None


def batch_choice(
    batches: Sequence[BatchResult], latency_bound_ms: float | None, scenario: str
) -> tuple[BatchChoice, ...]:
    """Per batch size, why it is or is not the best batch: INVALID, over the latency bound, or
    fewer samples/s than the best; so "none meets the rules" always comes with its reasons."""
    best = best_batch(batches, latency_bound_ms, scenario)
    name = bounded_latency(scenario)
    bound = "no latency bound" if latency_bound_ms is None else f"{name} ≤ {latency_bound_ms:g} ms"
    choice = []
    for batch in batches:
        p99 = bounded_p99_ms(batch, scenario)
        if batch.batch_size == best:
            reason = f"best: the most samples/s with {bound}"
        elif not batch.valid:
            reason = f"INVALID: {batch.why}"
        elif latency_bound_ms is not None and p99 > latency_bound_ms:
            reason = f"{name} {distinct(p99, latency_bound_ms)} ms > bound {latency_bound_ms:g} ms"
        else:
            reason = f"fewer samples/s than batch {best}"
        choice.append(BatchChoice(batch_size=batch.batch_size, reason=reason))
    return tuple(choice)


def distinct(value: float, bound: float) -> str:
    """`value` with 3 significant digits, or as many more as it takes not to read as `bound`
    (a p99 of 100.0004 ms against a 100 ms bound is "100.0004", not "100")."""
    for digits in range(3, 18):
        text = f"{value:.{digits}g}"
        if value == bound or float(text) != bound:
            return text
    return repr(value)


def batch_path(folder: Path, batch_size: int) -> Path:
    return folder / f"batch_{batch_size}.json"


def write_batch(folder: Path, key: RunKey, result: BatchResult) -> Path:
    return write_part(batch_path(folder, result.batch_size), key, "batch", result)


def load_completed(folder: Path, key: RunKey, batch_sizes: Sequence[int]) -> dict[int, BatchResult]:
    """Batch results already in `folder` for this run; a file from a different run is refused
    rather than mixed in."""
    done = {}
    for size in batch_sizes:
        result = read_part(batch_path(folder, size), key, "batch", BatchResult)
        if result is not None:
            done[size] = result
    return done
