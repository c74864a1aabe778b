"""How a bench run is held to its settings: best-batch reasons print enough digits, --resume
refuses other settings (LoadGen's included), default folders do not collide, and bad values,
settings LoadGen would refuse or ignore, or an unwritable --out fail in one line before the
model is even resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_targets import SleepyTarget

import ir.memory
import runner.bench_command
from runner.bench.results import batch_choice
from runner.cli import main
from runner.results.model import BatchResult, DriftRecord, LatencyStats

SLEEPY = "bench_targets:SleepyTarget"  # every query takes 5 ms
QUICK = ["--min-duration", "0.1", "--min-queries", "5"]


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    SleepyTarget.compiled_batches.clear()
    SleepyTarget.loaded_batches.clear()


def _bench(model: Path, *extra: str) -> int:
    return main(["bench", "--model", str(model), "--target", SLEEPY, *QUICK, *extra])


def _one_line_error(capsys, text: str) -> None:
    err = capsys.readouterr().err
    assert text in err and err.strip().count("\n") == 0, err


def test_a_p99_just_over_the_bound_prints_the_digits_that_show_it():
    p99 = 100.0004
    batch = BatchResult(
        batch_size=1,
        qps=1.0,
        latency_ms=LatencyStats(mean=p99, p50=p99, p90=p99, p99=p99),
        valid=True,
        why="",
        queries=1,
        drift=DriftRecord(outputs=()),
    )
    (choice,) = batch_choice([batch], 100.0, "server")
    assert choice.reason == "p99 100.0004 ms > bound 100 ms"


@pytest.mark.parametrize(
    ("changed", "difference"),
    [
        (["--min-duration", "0.2"], "settings.min_duration_s 0.1, this run 0.2"),
        (["--seed", "1"], "settings.seed 0, this run 1"),
        (["--min-queries", "6"], "settings.min_queries 5, this run 6"),
        (["--latency-percentile", "0.95"], "settings.latency_percentile None, this run 0.95"),
    ],
)
def test_resume_refuses_other_settings(relu_path, tmp_path, capsys, changed, difference):
    out = ["--out", str(tmp_path / "out")]
    assert _bench(relu_path, *out) == 0
    capsys.readouterr()
    SleepyTarget.compiled_batches.clear()
    assert _bench(relu_path, *out, "--resume", *changed) == 2
    _one_line_error(capsys, f"batch_1.json is from another run ({difference});")
    assert SleepyTarget.compiled_batches == []


def test_resume_names_the_field_of_a_damaged_batch_file(relu_path, tmp_path, capsys):
    out = tmp_path / "out"
    assert _bench(relu_path, "--out", str(out)) == 0
    stored = json.loads((out / "batch_1.json").read_text())
    stored["batch"]["latency_ms"]["p99"] = "slow"
    (out / "batch_1.json").write_text(json.dumps(stored))
    capsys.readouterr()
    assert _bench(relu_path, "--out", str(out), "--resume") == 2
    _one_line_error(capsys, f"--resume: {out / 'batch_1.json'}: batch.latency_ms.p99 must be int")


def test_default_folder_differs_by_pipeline_and_scenario(relu_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _bench(relu_path) == 0
    assert _bench(relu_path, "--pipeline", "cleanup") == 0
    assert _bench(relu_path, "--scenario", "offline") == 0
    assert sorted(p.name for p in (tmp_path / "bench-results").iterdir()) == [
        "relu-bench_targets_SleepyTarget-cleanup-single-stream",
        "relu-bench_targets_SleepyTarget-none-offline",
        "relu-bench_targets_SleepyTarget-none-single-stream",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "99999999999999999999"], "--batch: 99999999999999999999 is out of range"),
        (["--batch", "1,0"], "--batch '1,0': expected positive batch sizes"),
        (["--min-duration", "0"], "--min-duration: must be positive, got 0.0"),
        (["--min-duration", "nan"], "--min-duration: must be finite, got nan"),
        (["--min-queries", "0"], "--min-queries: must be a positive integer, got 0"),
        (["--latency-bound", "-5"], "--latency-bound: must be positive, got -5.0"),
        (["--server-qps", "0"], "--server-qps: must be positive, got 0.0"),
        (["--seed", "-1"], "--seed -1: must be 0 or more"),
        (["--latency-percentile", "1"], "--latency-percentile: must be in (0, 1) (0.9 is p90)"),
        (["--samples-per-query", "0"], "--samples-per-query: must be a positive integer, got 0"),
        # settings LoadGen would refuse, or ignore without a word
        (["--seed", str(2**64)], f"seed {2**64}: LoadGen's seeds are in [0, 2**64)"),
        (["--scenario", "server"], "the server scenario needs an arrival rate: --server-qps"),
        (
            ["--scenario", "server", "--server-qps", "50"],
            "the server scenario needs a latency bound: --latency-bound MS",
        ),
        (["--server-qps", "50"], "--server-qps applies to the server scenario only, not single"),
        (
            ["--scenario", "offline", "--latency-percentile", "0.9"],
            "the offline scenario has no latency percentile: LoadGen ignores it",
        ),
        (
            ["--samples-per-query", "4"],
            "samples per query apply to multi-stream only, not single-stream",
        ),
    ],
)
def test_bench_values_out_of_range_fail_in_one_line(
    relu_path, tmp_path, capsys, monkeypatch, args, message
):
    def unresolved(model: str) -> Path:
        raise AssertionError(f"{model} was resolved before the options were checked")

    monkeypatch.setattr(runner.bench_command, "resolve_model", unresolved)
    assert _bench(relu_path, "--out", str(tmp_path / "out"), *args) == 2
    _one_line_error(capsys, message)
    assert SleepyTarget.compiled_batches == [] and not (tmp_path / "out").exists()


def test_bench_batch_too_large_for_memory_fails_before_measuring(
    relu_path, tmp_path, capsys, monkeypatch
):
    """x and y at batch 10**9 are 16 GB each, and the largest value (y) counts again."""
    monkeypatch.setattr(ir.memory, "available_bytes", lambda: 2**30)
    assert _bench(relu_path, "--out", str(tmp_path / "out"), "--batch", "1,1000000000") == 2
    _one_line_error(capsys, "at batch 1000000000: needs at least 44.7 GiB")
    assert SleepyTarget.compiled_batches == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "under-file", "proc"])
def test_bench_out_unwritable_fails_before_measuring(relu_path, tmp_path, capsys, where):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    out = {"file": a_file, "under-file": a_file / "out", "proc": Path("/proc/asicperf-out")}[where]
    assert _bench(relu_path, "--out", str(out)) == 2
    _one_line_error(capsys, f"--out {out}: ")
    assert SleepyTarget.compiled_batches == [] and a_file.read_text() == "x"
