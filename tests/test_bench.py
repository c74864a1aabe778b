"""`runner bench`: asicperf's own statistics, the best-batch search it adds on top of LoadGen,
the result document, resume, and one-line errors. The scenarios themselves, run by LoadGen
through the whole command, are in test_bench_loadgen.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_targets import DELAY_S, SleepyTarget

from runner.bench.results import batch_choice, best_batch
from runner.bench.stats import latency_stats, percentile
from runner.cli import main
from runner.results.model import BatchResult, DriftRecord, LatencyStats

SLEEPY = "bench_targets:SleepyTarget"
# LoadGen's early stopping at single-stream's p90 needs 64 queries: 0.32 s of 5 ms queries
QUICK = ["--min-duration", "0.05", "--min-queries", "64"]


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    SleepyTarget.compiled_batches.clear()
    SleepyTarget.loaded_batches.clear()


def _bench(capsys, model: Path, out: Path, *extra: str) -> dict:
    args = ["bench", "--model", str(model), "--target", SLEEPY, "--out", str(out), "--json"]
    assert main([*args, *QUICK, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 101)]  # 1 .. 100 ms, shuffled order must not matter
    stats = latency_stats(values[::-1])
    assert stats == LatencyStats(mean=50.5, p50=50.0, p90=90.0, p99=99.0, min=1.0, max=100.0)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # rank ceil(0.5 * 4) = 2, no interpolation
    assert percentile([7.0], 99) == 7.0


def _stats(p99: float) -> LatencyStats:
    return LatencyStats(mean=p99, p50=p99, p90=p99, p99=p99)


def _batch(
    size: int, qps: float, p99: float, valid: bool = True, batch_p99: float | None = None
) -> BatchResult:
    return BatchResult(
        batch_size=size,
        qps=qps,
        latency_ms=_stats(p99),
        valid=valid,
        why="",
        queries=1,
        drift=DriftRecord(outputs=()),
        batch_ms=None if batch_p99 is None else _stats(batch_p99),
    )


def test_best_batch_is_the_fastest_within_the_bound():
    batches = [_batch(1, 100, 2), _batch(8, 400, 9), _batch(32, 900, 40), _batch(64, 999, 1, False)]
    assert best_batch(batches, 10, "single-stream") == 8
    assert best_batch(batches, None, "single-stream") == 32
    assert best_batch(batches, 0.5, "single-stream") is None


def test_offline_holds_the_time_per_batch_to_the_bound():
    """LoadGen's offline latencies run from the start of its one query (about the whole run),
    so the bound holds the session's p99 per batch."""
    batches = [_batch(1, 100, 2000, batch_p99=10), _batch(8, 400, 2000, batch_p99=60)]
    assert best_batch(batches, 50, "offline") == 1
    assert best_batch(batches, 50, "server") is None  # elsewhere LoadGen's p99 is the one
    assert [c.reason for c in batch_choice(batches, 50, "offline")] == [
        "best: the most samples/s with p99 per batch ≤ 50 ms",
        "p99 per batch 60 ms > bound 50 ms",
    ]


def test_json_document(relu_path, tmp_path, capsys):
    doc = _bench(capsys, relu_path, tmp_path / "out", "--batch", "1,2")
    assert {
        "model",
        "target",
        "pipeline",
        "scenario",
        "ir_fingerprint",
        "compile_s",
        "batches",
        "best_batch",
        "accuracy",
        "drift",
        "target_info",
        "audit",
        "environment",
    } <= set(doc)
    assert doc["schema"] == "asicperf.result/4" and doc["kind"] == "model"
    assert doc["ir_fingerprint"].startswith("sha256:") and doc["target"] == SLEEPY
    assert doc["environment"]["command"][:4] == ["runner", "bench", "--model", str(relu_path)]
    first = doc["batches"][0]
    assert len(first["latencies_ms"]) == first["queries"]
    assert min(first["latencies_ms"]) >= DELAY_S * 1e3 * 0.99
    assert [b["batch_size"] for b in doc["batches"]] == [1, 2] and doc["best_batch"] == 2
    assert set(first) >= {"qps", "latency_ms", "valid", "why", "compile_s", "queries", "loadgen"}
    asicperf_stats = {"mean", "min", "max", "p50", "p90", "p99"}
    assert set(first["latency_ms"]) == asicperf_stats | {"p95", "p97", "p999"}  # LoadGen's
    assert set(first["batch_ms"]) == asicperf_stats
    assert doc["settings"]["scenario"] == "single-stream" and doc["settings"]["min_queries"] == 64
    assert doc["drift"]["outputs"][0]["max_abs"] == 0.0
    assert doc["accuracy"]["metric"] == "output-drift" and doc["accuracy"]["passed"]
    written = json.loads((tmp_path / "out" / "result.json").read_text())
    assert written["batches"] == doc["batches"]


def test_resume_reruns_only_the_missing_batch(relu_path, tmp_path, capsys):
    out = tmp_path / "out"
    first = _bench(capsys, relu_path, out, "--batch", "1,2")
    (out / "batch_2.json").unlink()
    SleepyTarget.compiled_batches.clear()
    SleepyTarget.loaded_batches.clear()
    again = _bench(capsys, relu_path, out, "--batch", "1,2", "--resume")
    assert SleepyTarget.compiled_batches == [2] and SleepyTarget.loaded_batches == [2]
    assert again["batches"][0] == first["batches"][0]
    assert (out / "batch_2.json").exists()


def test_resume_refuses_another_runs_files(relu_path, tmp_path, capsys):
    out = tmp_path / "out"
    _bench(capsys, relu_path, out)
    args = ["bench", "--model", str(relu_path), "--target", SLEEPY, "--out", str(out), "--resume"]
    assert main([*args, *QUICK, "--scenario", "offline"]) == 2
    err = capsys.readouterr().err
    assert "is from another run (scenario" in err and err.strip().count("\n") == 0


@pytest.mark.parametrize("stored_version", [None, "mlcommons-loadgen 4.1"])
def test_resume_refuses_a_batch_measured_before_loadgen_or_by_another(
    relu_path, tmp_path, capsys, stored_version
):
    """A batch file of the engine before LoadGen has no LoadGen version in its key."""
    out = tmp_path / "out"
    _bench(capsys, relu_path, out)
    stored = json.loads((out / "batch_1.json").read_text())
    if stored_version is None:
        del stored["key"]["loadgen"]
    else:
        stored["key"]["loadgen"] = stored_version
    (out / "batch_1.json").write_text(json.dumps(stored))
    args = ["bench", "--model", str(relu_path), "--target", SLEEPY, "--out", str(out), "--resume"]
    assert main([*args, *QUICK]) == 2
    err = capsys.readouterr().err
    assert f"is from another run (loadgen {stored_version!r}, this run 'mlcommons-loadgen " in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model"], "no such file and no zoo model"),
        (["--model", "bert-base", "--batch", "x"], "--batch 'x'"),
        (["--level", "op", "--model", "bert-base"], "--model: not an option of --level op"),
        (["--model", "bert-base", "--op", "gemm"], "--op: not an option of --level model"),
    ],
)
def test_bad_input_is_one_line(capsys, args, message):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_table_output(relu_path, tmp_path, capsys):
    args = ["bench", "--model", str(relu_path), "--target", SLEEPY, "--out", str(tmp_path / "o")]
    assert main([*args, *QUICK, "--batch", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "samples/s" in out and "VALID" in out and "best batch size: 2" in out
