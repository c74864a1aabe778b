"""A session that fails under LoadGen: LoadGen still finishes (every sample it issued is
completed), the SUT and QSL are released, and the failure comes out as one line naming the
batch. Each run is bounded by a watchdog, so a hang fails the test instead of stalling it."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ir.errors import AsicperfError
from runner.loadgen.run import LoadgenRun, run_loadgen
from runner.loadgen.settings import LoadgenSettings
from tests.loadgen_fakes import SleepingSession

WATCHDOG_S = 30.0
SINGLE_STREAM = LoadgenSettings(scenario="single-stream", min_duration_s=0.2, min_queries=10)
SERVER = LoadgenSettings(
    scenario="server", min_duration_s=0.2, min_queries=10, server_qps=200.0, latency_bound_ms=50.0
)


def outcome_within_watchdog(call: Callable[[], LoadgenRun]) -> LoadgenRun | BaseException:
    """What `call` returned or raised, asserting it did so before the watchdog fired."""
    outcome: list[LoadgenRun | BaseException] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(WATCHDOG_S)
    assert not thread.is_alive(), "the LoadGen run hung"
    return outcome[0]


def outcome(
    settings: LoadgenSettings, session: Callable, log_dir: Path, **options: object
) -> LoadgenRun | BaseException:
    """What a run over 4 batches of 1 item returned or raised, within the watchdog."""
    return outcome_within_watchdog(
        lambda: run_loadgen(
            settings, session, batch_count=4, batch_size=1, log_dir=log_dir, **options
        )
    )


@pytest.mark.parametrize("settings", [SINGLE_STREAM, SERVER], ids=["single-stream", "server"])
def test_a_session_that_raises_is_one_line_after_loadgen_finishes(
    settings: LoadgenSettings, tmp_path: Path
) -> None:
    session = SleepingSession(0.001, batch_size=1, fail_on_call=6)  # after the 3 warm-up runs
    error = outcome(settings, session, tmp_path)
    failed = session.calls[5]
    assert isinstance(error, AsicperfError)
    assert str(error) == (
        f"batch {failed} under LoadGen failed: ValueError: device lost on batch {failed}"
    )
    assert len(session.calls) == 6  # nothing runs after the failure
    assert session.calls[:3] == [0, 1, 2]  # the warm-up
    # LoadGen finished its test and was released: the next run in this process works
    healthy = outcome(SINGLE_STREAM, SleepingSession(0.001, batch_size=1), tmp_path / "next")
    assert isinstance(healthy, LoadgenRun) and healthy.performance is not None


def test_a_warm_up_failure_stops_before_loadgen_starts(tmp_path: Path) -> None:
    session = SleepingSession(0.001, batch_size=1, fail_on_call=1)
    error = outcome(SINGLE_STREAM, session, tmp_path / "logs")
    assert isinstance(error, AsicperfError)
    assert str(error) == "warm-up batch 0 failed: ValueError: device lost on batch 0"
    assert not (tmp_path / "logs").exists()


def test_a_progress_callback_that_raises_is_reported_as_such(tmp_path: Path) -> None:
    def tick(fraction: float) -> None:
        raise RuntimeError("the terminal went away")

    error = outcome(SINGLE_STREAM, SleepingSession(0.001, batch_size=1), tmp_path, tick=tick)
    assert isinstance(error, AsicperfError)
    assert str(error) == "the progress callback failed: RuntimeError: the terminal went away"


def test_ctrl_c_stops_serving_and_is_raised_once_loadgen_finishes(tmp_path: Path) -> None:
    session = SleepingSession(0.001, batch_size=1)
    settings = LoadgenSettings(scenario="single-stream", min_duration_s=30.0, min_queries=10)
    interrupt = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    interrupt.start()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_loadgen(settings, session, batch_count=4, batch_size=1, log_dir=tmp_path)
    assert time.perf_counter() - started < 10.0  # not the 30 s LoadGen asked for
    assert 3 < len(session.calls) < 1000
    # LoadGen finished its test and was released: the next run in this process works
    healthy = outcome(SINGLE_STREAM, SleepingSession(0.001, batch_size=1), tmp_path / "next")
    assert isinstance(healthy, LoadgenRun)


@pytest.mark.parametrize(("batches", "size"), [(0, 1), (2, 0)])
def test_no_batches_or_empty_batches_are_refused(batches: int, size: int, tmp_path: Path) -> None:
    session = SleepingSession(0.001, batch_size=1)
    with pytest.raises(AsicperfError, match=f"got {batches} batches of {size}"):
        run_loadgen(SINGLE_STREAM, session, batch_count=batches, batch_size=size, log_dir=tmp_path)
    assert session.calls == []
