"""Small, valid result documents for report tests, with round figures so a test can predict
every number a report shows. Builders give JSON documents, as they sit in files, for a test to
change before reading them as records (`read`); every one reads."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ir.drift import HISTOGRAM_BINS
from runner.results.document import SCHEMA
from runner.results.files import Result, result_from_json

CREATED = "2026-01-02T03:04:05+00:00"
REVISION = "0123456789abcdef0123456789abcdef01234567"
ROOFLINE = {
    "host": {
        "device": "host: Test CPU",
        "compute_gflops": {
            "fp32": {"value": 100.0, "source": "test"},
            "int8": {"value": 400.0, "source": "test"},
        },
        "bandwidth_gbs": {"value": 10.0, "source": "test"},
        "cache_bytes": 1 << 20,
    }
}


def stamp(
    kind: str, created: str, environment: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """A document of the current version; checked by reading it as a record."""
    document = {"schema": SCHEMA, "kind": kind, "created": created, "environment": environment}
    document.update(body)
    result_from_json(document, "test document")
    return document


def read(document: Mapping[str, Any]) -> Result:
    """The document as the report reads it (older versions upgraded)."""
    return result_from_json(json.loads(json.dumps(document)), "test document")


def environment(cpu: str = "Test CPU", dirty: bool = False) -> dict[str, Any]:
    return {
        "host": {"cpu": cpu, "cores": 2, "threads": 2, "flags": [], "memory_gib": 4.0},
        "gpus": [],
        "os": "Linux",
        "python": "3.11",
        "packages": {},
        "git": {"revision": REVISION, "dirty": dirty},
        "command": ["runner", "bench"],
        "seed": 0,
        "threads": {"cpu_count": 2, "env": {}},
    }


def drift_output(
    histogram: Sequence[int], cosine: float = 1.0, max_abs: float = 0.0
) -> dict[str, Any]:
    """One output's drift; `histogram` has one count per HISTOGRAM_BINS entry."""
    assert len(histogram) == len(HISTOGRAM_BINS)
    return {
        "index": 0,
        "max_abs": max_abs,
        "mean_abs": max_abs / 2,
        "max_rel": 0.0,
        "mean_rel": 0.0,
        "cosine": cosine,
        "shape_match": True,
        "histogram": list(histogram),
        "top1_agreement": 1.0,
    }


def drift(outputs: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> dict[str, Any]:
    """A batch's drift, or with `batch_size` the document's (which says where it checked)."""
    at = {} if batch_size is None else {"batch_size": batch_size}
    return {**at, "bins": list(HISTOGRAM_BINS), "outputs": list(outputs)}


EXACT = drift_output([10] + [0] * 12)  # every element equal to the reference


def batch(
    batch_size: int,
    qps: float,
    latencies_ms: Sequence[float] | None = (1.0, 2.0, 3.0, 4.0),
    valid: bool = True,
) -> dict[str, Any]:
    """A batch whose summary statistics follow from `latencies_ms` (1, 2, 3, 4 by default:
    median 2, p99 4) or are 1, 2, 3, 4 ms when no raw latencies are kept."""
    ordered = sorted(latencies_ms or (1.0, 2.0, 3.0, 4.0))
    stats = {
        "mean": sum(ordered) / len(ordered),
        "p50": ordered[(len(ordered) - 1) // 2],
        "p90": ordered[-1],
        "p99": ordered[-1],
        "min": ordered[0],
        "max": ordered[-1],
    }
    return {
        "batch_size": batch_size,
        "qps": qps,
        "latency_ms": stats,
        "latencies_ms": list(latencies_ms) if latencies_ms is not None else None,
        "valid": valid,
        "why": "enough queries" if valid else "too few queries",
        "compile_s": 0.1,
        "queries": len(ordered),
        "duration_s": 1.0,
        "drift": drift([EXACT]),
        "accuracy": None,
    }


def model_document(
    model: str = "tiny",
    target: str = "onnxruntime",
    pipeline: str | None = None,
    qps: Mapping[int, float] | None = None,
    hardware: str | None = "host",
    audit: Mapping[str, Any] | None = None,
    accuracy: Mapping[str, Any] | None = None,
    outputs: Sequence[Mapping[str, Any]] = (EXACT,),
) -> dict[str, Any]:
    """A model result over `qps` (batch size: samples/s; 1: 100, 8: 400 by default), the
    largest throughput being the best batch."""
    qps = qps or {1: 100.0, 8: 400.0}
    body = {
        "model": model,
        "ir_fingerprint": "sha256:00",
        "target": target,
        "target_info": {
            "name": target,
            "version": "1.0",
            "device": "cpu: Test CPU",
            "hardware": hardware,
        },
        "target_options": {},
        "pipeline": pipeline,
        "audit": audit,
        "scenario": "offline",
        "workload": {},
        "settings": {},
        "compile_s": 0.5,
        "batches": [batch(size, value) for size, value in qps.items()],
        "best_batch": max(qps, key=lambda size: qps[size]),
        "accuracy": accuracy,
        "drift": drift(outputs, batch_size=1),
    }
    return stamp("model", CREATED, environment(), body)


def audited_pass(
    seq: int,
    name: str,
    nodes: tuple[int, int] = (8, 8),
    vs_input: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pass record; with `vs_input` drift it changed the numbers, without it nothing."""
    numeric = None if vs_input is None else {"seed": 0, "vs_previous": [], "vs_input": vs_input}
    return {
        "seq": seq,
        "pass": name,
        "config": {},
        "modified": vs_input is not None or nodes[0] != nodes[1],
        "wall_ms": 1.5,
        "nodes_before": nodes[0],
        "nodes_after": nodes[1],
        "rule_counts": {},
        "numeric": numeric,
    }


def op_case(
    op: str,
    provider: str,
    flops: int,
    nbytes: int,
    gflops: float,
    dtype: str = "fp32",
    samples_us: Sequence[float] = (10.0, 20.0, 30.0, 40.0),
) -> dict[str, Any]:
    """A case whose derived figures follow from flops, bytes and GFLOP/s (GB/s for 0 FLOPs)."""
    seconds = flops / (gflops * 1e9) if flops else nbytes / (gflops * 1e9)
    gbps = nbytes / seconds / 1e9
    intensity = flops / nbytes
    peak = ROOFLINE["host"]["compute_gflops"][dtype]["value"]
    return {
        "op": op,
        "provider": provider,
        "dtype": dtype,
        "shape": "64x64",
        "device": ROOFLINE["host"]["device"],
        "flops": flops,
        "bytes": nbytes,
        "intensity": intensity,
        "gflops": gflops if flops else 0.0,
        "gbps": gbps,
        "bound": "compute" if flops else "memory",
        "peak_fraction": gflops / peak if flops else gbps / 10.0,
        "prepare_s": 0.0,
        "latency_us": {"median": 25.0, "mean": 25.0, "p10": 10.0, "p90": 40.0, "iqr": 20.0},
        "cv": 0.1,
        "noise": 0.1,
        "noisy": False,
        "samples": len(samples_us),
        "warmup_calls": 1,
        "total_s": 0.1,
        "samples_us": list(samples_us),
    }


def op_document(
    cases: Sequence[Mapping[str, Any]],
    suite: str = "tiny-suite",
    failed: Sequence[Any] = (),
    rooflines: Mapping[str, Any] = ROOFLINE,
) -> dict[str, Any]:
    body = {
        "suite": suite,
        "seconds": 1.0,
        "policy": {},
        "rooflines": dict(rooflines),
        "cases": list(cases),
        "unsupported": [],
        "failed": list(failed),
    }
    return stamp("op", CREATED, environment(), body)


def legacy_model_document(model: str = "old") -> dict[str, Any]:
    """A version-1 model result: no schema key, no environment, no raw latencies."""
    batches = [batch(1, 30.0, latencies_ms=None)]
    for old in batches:
        del old["latencies_ms"]
    return {
        "model": model,
        "ir_fingerprint": "sha256:00",
        "target": "onnxruntime",
        "pipeline": None,
        "scenario": "single-stream",
        "workload": {},
        "settings": {"seed": 0},
        "compile_s": 1.0,
        "batches": batches,
        "best_batch": 1,
        "accuracy": None,
        "drift": drift([EXACT], batch_size=1),
        "host": "cpu: Old CPU",
        "versions": {"asicperf": "0.1.0", "python": "3.11", "target": "1.0"},
    }


def write(folder: Path, name: str, document: Mapping[str, Any]) -> Path:
    """The document as `folder/name/result.json`; the folder's path is returned."""
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "result.json").write_text(json.dumps(document), encoding="utf-8")
    return target
