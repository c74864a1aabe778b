"""The four scenarios on LoadGen with a fake session of known latency (a 2 ms sleep): LoadGen's
figures match the delay and its verdict is VALID; an overloaded Server run is INVALID and
says why in LoadGen's words. Each run lasts about half a second."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from runner.loadgen.run import LoadgenRun, run_loadgen
from runner.loadgen.settings import LoadgenSettings
from runner.loadgen.warmup import WARMUP_RUNS
from tests.loadgen_fakes import SleepingSession

DELAY_S = 0.002
DELAY_MS = DELAY_S * 1e3
SLACK = 1.5  # a sleep overshoots, more so on a busy machine; LoadGen's overhead adds a little


def measure(
    settings: LoadgenSettings, session: SleepingSession, log_dir: Path, ticks: list[float]
) -> LoadgenRun:
    return run_loadgen(
        settings,
        session,
        batch_count=4,
        batch_size=session.batch_size,
        log_dir=log_dir,
        tick=ticks.append,
    )


def test_single_stream_latency_and_throughput_are_the_delay(tmp_path: Path) -> None:
    session = SleepingSession(DELAY_S, batch_size=2)
    ticks: list[float] = []
    settings = LoadgenSettings(scenario="single-stream", min_duration_s=0.5, min_queries=64)
    run = measure(settings, session, tmp_path, ticks)
    performance = run.performance
    assert performance is not None and performance.valid, performance
    assert performance.scenario == "SingleStream"
    assert DELAY_MS <= performance.latency_ms.p50 <= DELAY_MS * SLACK
    assert performance.target_latency_percentile == 0.9
    assert DELAY_MS <= performance.early_stopping_latency_ms <= DELAY_MS * SLACK
    # LoadGen's queries per second x 2 items per batch
    assert run.items_per_s == pytest.approx(performance.samples_per_s * 2)
    assert 2 / (DELAY_S * SLACK) <= run.items_per_s <= 2 / DELAY_S
    assert len(run.timing.query_latencies_ms) == performance.query_count >= 64
    assert min(run.timing.query_latencies_ms) >= DELAY_MS
    assert run.timing.duration_s >= 0.5
    assert ticks[-1] == 1.0 and ticks == sorted(ticks)
    assert run.errors == () and run.files.summary.is_file()


def test_multi_stream_figure_is_the_latency_of_its_batches_back_to_back(tmp_path: Path) -> None:
    session = SleepingSession(DELAY_S, batch_size=1)
    settings = LoadgenSettings(
        scenario="multi-stream",
        min_duration_s=0.3,
        min_queries=100,
        samples_per_query=2,
        latency_percentile=0.9,  # LoadGen's 0.99 needs 662 queries to stop early
    )
    run = measure(settings, session, tmp_path, [])
    performance = run.performance
    assert performance is not None and performance.valid, performance
    assert performance.scenario == "MultiStream"
    assert 2 * DELAY_MS <= performance.latency_ms.p50 <= 2 * DELAY_MS * SLACK
    assert performance.samples_per_s is None  # LoadGen reports a latency only
    assert len(run.timing.batch_ms) == 2 * performance.query_count
    assert 1 / (DELAY_S * SLACK) <= run.items_per_s <= 1 / DELAY_S


def test_server_latency_is_the_delay_at_low_load(tmp_path: Path) -> None:
    session = SleepingSession(DELAY_S, batch_size=2)
    settings = LoadgenSettings(
        scenario="server",
        min_duration_s=0.5,
        min_queries=50,
        server_qps=250.0,  # items/s: 125 batches/s, the session busy a quarter of the time
        latency_bound_ms=50.0,
        latency_percentile=0.9,
    )
    run = measure(settings, session, tmp_path, [])
    performance = run.performance
    assert performance is not None and performance.valid, performance
    assert DELAY_MS <= performance.latency_ms.p50 <= DELAY_MS * SLACK
    assert performance.overlatency_query_count == 0
    assert run.items_per_s == pytest.approx(250.0, rel=0.25)  # Poisson arrivals, seeded


def test_offline_throughput_is_batches_back_to_back(tmp_path: Path) -> None:
    session = SleepingSession(DELAY_S, batch_size=4)
    ticks: list[float] = []
    settings = LoadgenSettings(scenario="offline", min_duration_s=0.5, min_queries=1)
    run = measure(settings, session, tmp_path, ticks)
    performance = run.performance
    assert performance is not None and performance.valid, performance
    assert performance.query_count == 1  # one query holds every sample
    assert performance.latency_ms.max >= 500.0
    assert 4 / (DELAY_S * SLACK) <= run.items_per_s <= 4 / DELAY_S
    assert len(run.timing.query_latencies_ms) == 1
    assert len(ticks) == len(run.timing.batch_ms) and ticks[-1] == 1.0


def test_an_overloaded_server_run_is_invalid_and_says_why(tmp_path: Path) -> None:
    session = SleepingSession(DELAY_S, batch_size=1)
    settings = LoadgenSettings(
        scenario="server",
        min_duration_s=0.1,
        min_queries=1,
        server_qps=2000.0,  # four times what a 2 ms session serves
        latency_bound_ms=10.0,
    )
    performance = measure(settings, session, tmp_path, []).performance
    assert performance is not None and not performance.valid
    reasons = performance.invalid_reasons
    assert reasons[0].startswith(
        "performance constraints not satisfied: p99 over the 10 ms bound ("
    )
    assert reasons[1].startswith("early stopping not satisfied: Run unsuccessful.")
    assert reasons[2] == "LoadGen recommends: Reduce target QPS to improve latency."
    assert performance.latency_ms.p99 > 10.0


class FasterAfterWarmUp(SleepingSession):
    """20x slower on the warm-up runs than after them."""

    def __call__(self, index: int) -> list[np.ndarray]:
        if len(self.calls) < WARMUP_RUNS:
            time.sleep(19 * self.delay_s)
        return super().__call__(index)


def test_a_session_faster_than_its_warm_up_runs_out_of_queries(tmp_path: Path) -> None:
    """LoadGen generates queries for the warm-up's pace; a session 20x faster after it uses
    them up before the minimum duration, and LoadGen's error is the reason."""
    session = FasterAfterWarmUp(0.001, batch_size=1)
    settings = LoadgenSettings(scenario="single-stream", min_duration_s=0.3, min_queries=10)
    result = run_loadgen(settings, session, batch_count=2, batch_size=1, log_dir=tmp_path)
    performance = result.performance
    assert performance is not None and not performance.valid
    assert "min duration not satisfied (min 0.3 s)" in performance.invalid_reasons
    assert any("Ran out of generated queries" in error for error in result.errors)
    assert performance.invalid_reasons[-1] == result.errors[-1]
