"""Bench results: one record per batch size, written as soon as it is measured so an
interrupted run keeps what it finished, and the choice of the best batch size."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ir.errors import AsicperfError
from ir.files import write_text_atomically
from runner.bench.scenarios import distinct
from runner.results.model import BatchChoice, BatchResult, Coverage
from runner.results.record import ResultError
from targets.partition import PartitionPlan


@dataclass(frozen=True)
class RunKey:
    """What batch results must share to be combined in one result (and resumed): everything
    that changes a batch's figures or its verdict."""

    ir_fingerprint: str
    target: str
    pipeline: str | None
    scenario: str
    settings: Mapping[str, Any]  # the scenario's rules, run length and seed
    accuracy: Mapping[str, Any]  # the metric, its threshold and the data set fraction

    def to_json(self) -> dict[str, Any]:
        return {
            "ir_fingerprint": self.ir_fingerprint,
            "target": self.target,
            "pipeline": self.pipeline,
            "scenario": self.scenario,
            "settings": dict(self.settings),
            "accuracy": dict(self.accuracy),
        }

    def difference(self, stored: Mapping[str, Any]) -> str | None:
        """The first field where `stored` (another run's key) differs, as
        "name stored-value, this run value"; None when they match."""
        for name, value in _flat(self.to_json()).items():
            found = _flat(stored).get(name)
            if found != value:
                return f"{name} {found!r}, this run {value!r}"
        return None


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"settings": {"seed": 0}} -> {"settings.seed": 0}, so a difference names the setting."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def coverage_of(plan: PartitionPlan) -> Coverage:
    """The share of the compiled model that `plan` puts on the target."""
    return Coverage(
        nodes=sum(len(segment.nodes) for segment in plan.segments),
        fallback_nodes=len(plan.unsupported),
        node_coverage=plan.node_coverage,
        flop_coverage=plan.flop_coverage,
    )


def _within_bound(batch: BatchResult, latency_bound_ms: float | None) -> bool:
    return latency_bound_ms is None or batch.latency_ms.p99 <= latency_bound_ms


def best_batch(batches: Sequence[BatchResult], latency_bound_ms: float | None) -> int | None:
    """The VALID batch size with the highest QPS whose p99 meets the bound (if there is one)."""
    fitting = [b for b in batches if b.valid and _within_bound(b, latency_bound_ms)]
    return max(fitting, key=lambda b: b.qps).batch_size if fitting else None


def batch_choice(
    batches: Sequence[BatchResult], latency_bound_ms: float | None
) -> tuple[BatchChoice, ...]:
    """Per batch size, why it is or is not the best batch: INVALID, over the latency bound, or
    fewer samples/s than the best; so "none meets the rules" always comes with its reasons."""
    best = best_batch(batches, latency_bound_ms)
    bound = "no latency bound" if latency_bound_ms is None else f"p99 ≤ {latency_bound_ms:g} ms"
    choice = []
    for batch in batches:
        if batch.batch_size == best:
            reason = f"best: the most samples/s with {bound}"
        elif not batch.valid:
            reason = f"INVALID: {batch.why}"
        elif latency_bound_ms is not None and batch.latency_ms.p99 > latency_bound_ms:
            p99 = distinct(batch.latency_ms.p99, latency_bound_ms)
            reason = f"p99 {p99} ms > bound {latency_bound_ms:g} ms"
        else:
            reason = f"fewer samples/s than batch {best}"
        choice.append(BatchChoice(batch_size=batch.batch_size, reason=reason))
    return tuple(choice)


def batch_path(folder: Path, batch_size: int) -> Path:
    return folder / f"batch_{batch_size}.json"


def write_batch(folder: Path, key: RunKey, result: BatchResult) -> Path:
    document = {"key": key.to_json(), "batch": result.to_json()}
    return write_text_atomically(batch_path(folder, result.batch_size), _dumps(document))


def load_completed(folder: Path, key: RunKey, batch_sizes: Sequence[int]) -> dict[int, BatchResult]:
    """Batch results already in `folder` for this run; a file from a different run is refused
    rather than mixed in."""
    done = {}
    for size in batch_sizes:
        path = batch_path(folder, size)
        if not path.exists():
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            stored = document["key"]
            result = BatchResult.from_json(document["batch"], str(path), "batch")
        except (ValueError, KeyError, TypeError) as error:
            raise AsicperfError(f"--resume: {path}: not a bench batch file ({error})") from None
        except ResultError as error:
            raise AsicperfError(f"--resume: {error}") from None
        difference = key.difference(stored)
        if difference is not None:
            raise AsicperfError(
                f"--resume: {path} is from another run ({difference}); "
                "use another --out or drop --resume"
            )
        done[size] = result
    return done


def _dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"
