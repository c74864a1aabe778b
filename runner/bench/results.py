"""Bench results: one record per batch size, written as soon as it is measured so an
interrupted run keeps what it finished, and the whole document at the end."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ir.errors import AsicperfError
from ir.files import write_text_atomically
from runner.bench.stats import LatencyStats


@dataclass(frozen=True)
class RunKey:
    """What batch results must share to be combined in one result (and resumed)."""

    ir_fingerprint: str
    target: str
    pipeline: str | None
    scenario: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ir_fingerprint": self.ir_fingerprint,
            "target": self.target,
            "pipeline": self.pipeline,
            "scenario": self.scenario,
        }


@dataclass(frozen=True)
class BatchResult:
    """One batch size measured: throughput in samples/s, latency per query (= per batch)."""

    batch_size: int
    qps: float
    latency_ms: LatencyStats
    valid: bool
    why: str
    compile_s: float
    queries: int
    duration_s: float
    drift: Mapping[str, Any]  # drift report against the reference target, on the seeded batch
    accuracy: Mapping[str, Any] | None  # measured on the run's first batch size only
    latencies_ms: tuple[float, ...] = ()  # every query, in issue order
    audit: Mapping[str, Any] | None = None  # the pipeline's audit, on the first batch size only

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "qps": self.qps,
            "latency_ms": self.latency_ms.to_json(),
            "valid": self.valid,
            "why": self.why,
            "compile_s": self.compile_s,
            "queries": self.queries,
            "duration_s": self.duration_s,
            "drift": dict(self.drift),
            "accuracy": None if self.accuracy is None else dict(self.accuracy),
            "latencies_ms": [round(latency, 6) for latency in self.latencies_ms],
            "audit": None if self.audit is None else dict(self.audit),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchResult:
        fields = dict(data)
        fields["latency_ms"] = LatencyStats.from_json(data["latency_ms"])
        fields["latencies_ms"] = tuple(data.get("latencies_ms", ()))
        return cls(**fields)


def best_batch(batches: Sequence[BatchResult], latency_bound_ms: float | None) -> int | None:
    """The VALID batch size with the highest QPS whose p99 meets the bound (if there is one)."""
    fitting = [
        b
        for b in batches
        if b.valid and (latency_bound_ms is None or b.latency_ms.p99 <= latency_bound_ms)
    ]
    return max(fitting, key=lambda b: b.qps).batch_size if fitting else None


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
            result = BatchResult.from_json(document["batch"])
        except (ValueError, KeyError, TypeError) as error:
            raise AsicperfError(f"--resume: {path}: not a bench batch file ({error})") from None
        for name, value in key.to_json().items():
            if stored.get(name) != value:
                raise AsicperfError(
                    f"--resume: {path} is from another run ({name} {stored.get(name)!r}, "
                    f"this run {value!r}); use another --out or drop --resume"
                )
        done[size] = result
    return done


def _dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"
