"""`runner bench` on LoadGen, through the whole command, with a target whose every batch sleeps
5 ms: each scenario's figures and verdict are LoadGen's and match the delay, an overloaded
Server run is INVALID in LoadGen's words, LoadGen's logs sit beside the result (or under
--loadgen-log) and the result references them, and the accuracy run feeds the task metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bench_targets import DELAY_S, SleepyTarget

import runner.bench.engine
from runner.cli import main
from zoo.task_data import OutputSpec, TaskData

SLEEPY = "bench_targets:SleepyTarget"
DELAY_MS = DELAY_S * 1e3
SLACK = 1.5  # a sleep overshoots, more so on a busy machine; LoadGen adds a little
SUMMARY = "mlperf_log_summary.txt"
DETAIL = "mlperf_log_detail.txt"


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    SleepyTarget.compiled_batches.clear()
    SleepyTarget.loaded_batches.clear()


def _bench(capsys, model: Path, out: Path, *extra: str) -> dict:
    args = ["bench", "--model", str(model), "--target", SLEEPY, "--out", str(out), "--json"]
    assert main([*args, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_single_stream_latency_and_throughput_are_the_delay(relu_path, tmp_path, capsys):
    run = ["--batch", "4", "--min-duration", "0.05", "--min-queries", "64"]
    (batch,) = _bench(capsys, relu_path, tmp_path / "out", *run)["batches"]
    assert batch["valid"], batch["why"]
    assert DELAY_MS <= batch["latency_ms"]["p50"] <= batch["latency_ms"]["p90"] < DELAY_MS * SLACK
    assert 4 / DELAY_S / SLACK < batch["qps"] <= 4 / DELAY_S  # LoadGen's queries/s x 4 items
    assert batch["queries"] >= 64 and len(batch["latencies_ms"]) == batch["queries"]
    loadgen = batch["loadgen"]
    assert loadgen["scenario"] == "SingleStream" and loadgen["target_latency_percentile"] == 0.9
    assert DELAY_MS <= loadgen["early_stopping_latency_ms"] < DELAY_MS * SLACK
    assert batch["why"].startswith("min duration satisfied (min 0.05 s); min queries satisfied (")
    assert "early stopping satisfied: Processed at least 64 queries" in batch["why"]
    assert SleepyTarget.compiled_batches == [4]  # shapes bound before compiling


def test_multi_stream_query_is_its_batches_back_to_back(relu_path, tmp_path, capsys):
    run = ["--scenario", "multi-stream", "--samples-per-query", "2", "--latency-percentile", "0.9"]
    quick = ["--min-duration", "0.05", "--min-queries", "64"]  # p90 stops early at 64 queries
    (batch,) = _bench(capsys, relu_path, tmp_path / "out", *run, *quick)["batches"]
    assert batch["valid"], batch["why"]
    assert 2 * DELAY_MS <= batch["latency_ms"]["p50"] < 2 * DELAY_MS * SLACK
    assert 1 / DELAY_S / SLACK < batch["qps"] <= 1 / DELAY_S  # two batches of 1 per query
    assert DELAY_MS <= batch["batch_ms"]["p50"] < DELAY_MS * SLACK
    assert batch["loadgen"]["scenario"] == "MultiStream" and batch["queries"] >= 64


def test_server_at_half_load_meets_the_bound(relu_path, tmp_path, capsys):
    """100 queries/s of 5 ms each: the session is busy half the time."""
    server = ["--scenario", "server", "--server-qps", "100", "--latency-bound", "50"]
    quick = ["--latency-percentile", "0.9", "--min-duration", "0.05", "--min-queries", "64"]
    (batch,) = _bench(capsys, relu_path, tmp_path / "out", *server, *quick)["batches"]
    assert batch["valid"], batch["why"]
    assert batch["why"].startswith(
        "performance constraints satisfied: p90 within the 50 ms bound (0 of "
    )
    assert DELAY_MS <= batch["latency_ms"]["p50"] < 50
    assert batch["qps"] == pytest.approx(100, rel=0.3)  # Poisson arrivals, seeded
    assert batch["loadgen"]["overlatency_queries"] == 0


def test_offline_throughput_is_batches_back_to_back(relu_path, tmp_path, capsys):
    run = ["--scenario", "offline", "--batch", "8", "--min-duration", "0.2", "--min-queries", "1"]
    doc = _bench(capsys, relu_path, tmp_path / "out", *run)
    (batch,) = doc["batches"]
    assert batch["valid"], batch["why"]
    assert 8 / DELAY_S / SLACK < batch["qps"] <= 8 / DELAY_S
    assert batch["queries"] == 1  # LoadGen's one query holds every sample
    assert batch["latency_ms"]["max"] >= 200  # ... timed from its start
    assert DELAY_MS <= batch["batch_ms"]["p99"] < DELAY_MS * SLACK
    assert batch["why"].startswith("min duration satisfied (min 0.2 s); min samples satisfied (")


def test_an_overloaded_server_run_is_invalid_in_loadgens_words(relu_path, tmp_path, capsys):
    """400 queries/s where the session serves 200: the queue grows all run long."""
    server = ["--scenario", "server", "--server-qps", "400", "--latency-bound", "20"]
    args = [*server, "--min-duration", "0.2", "--min-queries", "1"]
    doc = _bench(capsys, relu_path, tmp_path / "out", *args)
    (batch,) = doc["batches"]
    assert not batch["valid"] and batch["latency_ms"]["p99"] > 20
    reasons = batch["why"].split("; ")
    assert reasons[0].startswith("performance constraints not satisfied: p99 over the 20 ms bound")
    assert reasons[-1] == "LoadGen recommends: Reduce target QPS to improve latency."
    assert doc["best_batch"] is None
    assert doc["batch_choice"][0]["reason"] == f"INVALID: {batch['why']}"


def test_logs_sit_beside_the_result_and_are_referenced(relu_path, tmp_path, capsys):
    out = tmp_path / "out"
    doc = _bench(capsys, relu_path, out, "--batch", "1,2", "--min-duration", "0.05")
    for batch in doc["batches"]:
        size = batch["batch_size"]
        logs = [f"loadgen/batch-{size}/{SUMMARY}", f"loadgen/batch-{size}/{DETAIL}"]
        assert batch["loadgen"]["logs"] == logs
        assert "Result is : VALID" in (out / logs[0]).read_text()
        assert ":::MLLOG" in (out / logs[1]).read_text()
    assert json.loads((out / "result.json").read_text())["batches"] == doc["batches"]


def test_loadgen_log_keeps_the_logs_elsewhere(relu_path, tmp_path, capsys):
    out, logs = tmp_path / "out", tmp_path / "logs"
    doc = _bench(capsys, relu_path, out, "--min-duration", "0.05", "--loadgen-log", str(logs))
    (batch,) = doc["batches"]
    assert batch["loadgen"]["logs"] == [f"../logs/batch-1/{SUMMARY}", f"../logs/batch-1/{DETAIL}"]
    assert (logs / "batch-1" / SUMMARY).is_file() and not (out / "loadgen").exists()


def test_unwritable_loadgen_log_fails_before_anything(relu_path, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = ["bench", "--model", str(relu_path), "--target", SLEEPY, "--out", str(tmp_path / "o")]
    assert main([*args, "--loadgen-log", str(a_file / "logs")]) == 2
    err = capsys.readouterr().err
    assert f"--loadgen-log {a_file / 'logs'}: " in err and err.strip().count("\n") == 0
    assert SleepyTarget.compiled_batches == [] and not (tmp_path / "o").exists()


def _relu_task(model: str, batch_size: int, fraction: float, threshold: float) -> TaskData:
    """Three batches of x and, as truth, relu(x) for the real items; the last batch holds one
    real item and padding. The score per item is 1 when its outputs equal the truth exactly."""
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((2 * batch_size + 1, 4)).astype(np.float32)
    batches, truths = [], []
    for start in range(0, len(inputs), batch_size):
        real = inputs[start : start + batch_size]
        padded = np.concatenate([real, np.repeat(real[-1:], batch_size - len(real), 0)])
        batches.append({"x": padded})
        truths.append(np.maximum(real, 0))
    return TaskData(
        model=model,
        metric="relu-exact",
        threshold=threshold,
        batch_size=batch_size,
        batches=tuple(batches),
        truths=tuple(truths),
        outputs=(OutputSpec("y", np.dtype(np.float32), (batch_size, 4)),),
        item_scores=lambda outputs, truth: np.all(outputs[0] == truth, axis=1).astype(float),
    )


def test_the_accuracy_run_feeds_the_task_metric(relu_path, tmp_path, capsys, monkeypatch):
    """A model with a task data set: its metric comes from LoadGen's accuracy run, on the first
    batch size only, and the result references that run's logs."""
    monkeypatch.setattr(runner.bench.engine, "task_data", _relu_task)
    out = tmp_path / "out"
    doc = _bench(capsys, relu_path, out, "--batch", "2,4", "--min-duration", "0.05")
    accuracy = doc["accuracy"]
    assert (accuracy["metric"], accuracy["value"], accuracy["samples"]) == ("relu-exact", 1.0, 5)
    assert accuracy["passed"] and doc["batches"][1]["accuracy"] is None
    folder = "loadgen/batch-2-accuracy"
    assert accuracy["logs"] == [
        f"{folder}/{SUMMARY}",
        f"{folder}/{DETAIL}",
        f"{folder}/mlperf_log_accuracy.json",
    ]
    logged = json.loads((out / folder / "mlperf_log_accuracy.json").read_text())
    assert sorted(entry["qsl_idx"] for entry in logged) == [0, 1, 2]
    assert not (out / "loadgen" / "batch-4-accuracy").exists()


def test_resume_keeps_a_batch_of_the_same_loadgen_settings_only(relu_path, tmp_path, capsys):
    out = tmp_path / "out"
    multi = ["--scenario", "multi-stream", "--latency-percentile", "0.9", "--min-duration", "0.05"]
    run = [*multi, "--min-queries", "64", "--batch", "1,2"]
    first = _bench(capsys, relu_path, out, *run, "--samples-per-query", "1")
    (out / "batch_2.json").unlink()
    SleepyTarget.compiled_batches.clear()
    again = _bench(capsys, relu_path, out, *run, "--samples-per-query", "1", "--resume")
    assert SleepyTarget.compiled_batches == [2] and again["batches"][0] == first["batches"][0]
    args = ["bench", "--model", str(relu_path), "--target", SLEEPY, "--out", str(out)]
    assert main([*args, *run, "--samples-per-query", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "batch_1.json is from another run (settings.samples_per_query 1, this run 2)" in err
