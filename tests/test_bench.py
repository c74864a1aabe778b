"""`runner bench`: the statistics, the LoadGen scenario rules against a target with a known
delay, best-batch search, resume, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_targets import DELAY_S, SleepyTarget

from runner.bench.results import best_batch
from runner.bench.stats import latency_stats, percentile
from runner.cli import main
from runner.results.model import BatchResult, DriftRecord, LatencyStats

SLEEPY = "bench_targets:SleepyTarget"
QUICK = ["--min-duration", "0.2", "--min-queries", "10"]


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


def test_single_stream_measures_the_known_delay(relu_path, tmp_path, capsys):
    doc = _bench(capsys, relu_path, tmp_path / "out", "--batch", "4")
    (batch,) = doc["batches"]
    assert batch["valid"], batch["why"]
    assert DELAY_S * 1e3 <= batch["latency_ms"]["mean"] < DELAY_S * 1e3 * 1.6
    assert 4 / DELAY_S / 1.6 < batch["qps"] <= 4 / DELAY_S
    assert batch["queries"] >= 10 and batch["duration_s"] >= 0.2
    assert SleepyTarget.compiled_batches == [4]  # shapes bound before compiling


def test_offline_throughput(relu_path, tmp_path, capsys):
    doc = _bench(capsys, relu_path, tmp_path / "out", "--batch", "8", "--scenario", "offline")
    (batch,) = doc["batches"]
    assert batch["valid"] and 8 / DELAY_S / 1.6 < batch["qps"] <= 8 / DELAY_S


@pytest.mark.parametrize(("load", "valid"), [(0.3, True), (2.0, False)])
def test_server_verdict_follows_the_latency_bound(relu_path, tmp_path, capsys, load, valid):
    qps = str(load / DELAY_S)  # batch 1: samples/s = queries/s; 1 / DELAY_S is the capacity
    server = ["--scenario", "server", "--server-qps", qps, "--latency-bound", "30"]
    (batch,) = _bench(capsys, relu_path, tmp_path / "out", *server)["batches"]
    assert batch["valid"] is valid
    if not valid:
        assert batch["why"].startswith("latency bound: p99")


def test_server_needs_a_rate(relu_path, tmp_path, capsys):
    args = ["bench", "--model", str(relu_path), "--scenario", "server", "--out", str(tmp_path)]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def _batch(size: int, qps: float, p99: float, valid: bool = True) -> BatchResult:
    return BatchResult(
        batch_size=size,
        qps=qps,
        latency_ms=LatencyStats(mean=p99, p50=p99, p90=p99, p99=p99),
        valid=valid,
        why="",
        queries=1,
        drift=DriftRecord(outputs=()),
    )


def test_best_batch_is_the_fastest_within_the_bound():
    batches = [_batch(1, 100, 2), _batch(8, 400, 9), _batch(32, 900, 40), _batch(64, 999, 1, False)]
    assert best_batch(batches, latency_bound_ms=10) == 8
    assert best_batch(batches, latency_bound_ms=None) == 32
    assert best_batch(batches, latency_bound_ms=0.5) is None


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
    assert doc["schema"] == "asicperf.result/2" and doc["kind"] == "model"
    assert doc["ir_fingerprint"].startswith("sha256:") and doc["target"] == SLEEPY
    assert doc["environment"]["command"][:4] == ["runner", "bench", "--model", str(relu_path)]
    first = doc["batches"][0]
    assert len(first["latencies_ms"]) == first["queries"]
    assert min(first["latencies_ms"]) >= DELAY_S * 1e3 * 0.99
    assert [b["batch_size"] for b in doc["batches"]] == [1, 2] and doc["best_batch"] == 2
    assert set(doc["batches"][0]) >= {"qps", "latency_ms", "valid", "why", "compile_s", "queries"}
    assert set(doc["batches"][0]["latency_ms"]) == {"mean", "p50", "p90", "p99", "min", "max"}
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
