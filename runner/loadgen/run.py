"""One LoadGen test for one batch size: the entry point of the package.

`run_loadgen` measures a compiled session over a list of input batches: it warms the session
up (performance runs), fills LoadGen's settings, runs LoadGen's test (the session serves on
LoadGen's issue thread, sut.py) and reads the logs back. `run_server` does the same for any
`SampleServer` (the token server of token_run.py); `run_sut` is the bare test for settings
built by the caller, and returns the SUT's timings and the detail log for the caller to read.

The SUT and QSL are always destroyed, once LoadGen's test has returned: while it runs LoadGen
still calls into them (only a second Ctrl-C leaves it running, as the process is ending).
A failure of the session is raised after LoadGen returns, as a one-line AsicperfError.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlperf_loadgen as lg

from ir.errors import AsicperfError, first_line
from runner.loadgen.detail_log import DetailLog, read_detail_log
from runner.loadgen.lg_settings import to_test_settings
from runner.loadgen.log_files import LoadgenLogFiles, log_settings
from runner.loadgen.performance import LoadgenPerformance, performance_of
from runner.loadgen.progress import Goal, Tick, progress_goal
from runner.loadgen.serving import RunBatch, SampleServer, batch_server
from runner.loadgen.settings import LoadgenSettings
from runner.loadgen.sut import BatchSut, SutTiming
from runner.loadgen.warmup import WARMUP_RUNS, fastest_batch_s

NO_AUDIT_CONFIG = ""  # LoadGen would apply an audit.config found in the working directory


@dataclass(frozen=True)
class LoadgenRun:
    """One batch size's LoadGen test. `performance` is None for an accuracy run: LoadGen logs
    no figures then, only the responses (`files.accuracy`, read by accuracy_log.py)."""

    settings: LoadgenSettings
    batch_size: int
    accuracy: bool
    performance: LoadgenPerformance | None
    errors: tuple[str, ...]  # LoadGen's own, from its detail log
    warnings: tuple[str, ...]
    timing: SutTiming
    files: LoadgenLogFiles

    @property
    def items_per_s(self) -> float | None:
        """LoadGen's throughput x the batch size. LoadGen reports none for MultiStream (its
        figure is the query latency), so there the SUT's own batches over its own clock."""
        if self.performance is None:
            return None
        if self.performance.samples_per_s is not None:
            return self.performance.samples_per_s * self.batch_size
        return len(self.timing.batch_ms) * self.batch_size / self.timing.duration_s


def run_loadgen(
    settings: LoadgenSettings,
    run: RunBatch,
    *,
    batch_count: int,
    batch_size: int,
    log_dir: Path,
    accuracy: bool = False,
    tick: Tick = lambda fraction: None,
) -> LoadgenRun:
    """Measure `run` (input batch index in range(batch_count) -> the session's outputs for it,
    each batch holding `batch_size` items) under `settings`, LoadGen's logs going to
    `log_dir`. With `accuracy`, LoadGen's accuracy mode: every batch once, its outputs logged
    as response bytes (responses.py), no warm-up and no figures. `run` and `tick` are called
    on LoadGen's issue thread, one call at a time."""
    if settings.token_latencies:
        raise AsicperfError(
            "token latencies need a token-streaming session (run_token_loadgen), "
            "not a session that returns whole outputs"
        )
    serve = batch_server(run, with_responses=accuracy)
    loadgen, _ = run_server(
        settings,
        serve,
        warm_up=run,
        batch_count=batch_count,
        batch_size=batch_size,
        log_dir=log_dir,
        accuracy=accuracy,
        tick=tick,
    )
    return loadgen


def run_server(
    settings: LoadgenSettings,
    serve: SampleServer,
    *,
    warm_up: RunBatch,
    warmup_runs: int = WARMUP_RUNS,
    batch_count: int,
    batch_size: int,
    log_dir: Path,
    accuracy: bool,
    tick: Tick,
) -> tuple[LoadgenRun, DetailLog]:
    """`run_loadgen` for any `SampleServer` (a token server, say): `warm_up` runs one sample
    whole, `warmup_runs` times, outside LoadGen, before a performance run. The detail log comes
    back too, for the figures such a server's runs add (token latencies)."""
    if batch_count < 1 or batch_size < 1:
        raise AsicperfError(
            f"LoadGen needs at least one input batch of at least one item, "
            f"got {batch_count} batches of {batch_size}"
        )
    expected_batch_s = None if accuracy else fastest_batch_s(warm_up, batch_count, warmup_runs)
    test = to_test_settings(
        settings, batch_size=batch_size, expected_batch_s=expected_batch_s, accuracy=accuracy
    )
    goal = progress_goal(settings, accuracy=accuracy, batch_count=batch_count)
    files = LoadgenLogFiles(log_dir)
    timing, log = run_sut(test, serve, batch_count=batch_count, files=files, goal=goal, tick=tick)
    loadgen = LoadgenRun(
        settings=settings,
        batch_size=batch_size,
        accuracy=accuracy,
        performance=None if accuracy else performance_of(log),
        errors=log.errors,
        warnings=log.warnings,
        timing=timing,
        files=files,
    )
    return loadgen, log


def run_sut(
    test: lg.TestSettings,
    serve: SampleServer,
    *,
    batch_count: int,
    files: LoadgenLogFiles,
    goal: Goal,
    tick: Tick,
) -> tuple[SutTiming, DetailLog]:
    """LoadGen's test of a QSL of `batch_count` in-memory samples, served by `serve`."""
    files.folder.mkdir(parents=True, exist_ok=True)
    sut = BatchSut(serve, goal, tick, first_tokens=test.use_token_latencies)
    sut_handle = lg.ConstructSUT(sut.issue, sut.flush)
    try:
        qsl_handle = lg.ConstructQSL(batch_count, batch_count, _in_memory, _in_memory)
    except BaseException:
        lg.DestroySUT(sut_handle)
        raise
    loadgen = _LoadgenTest(sut_handle, qsl_handle, test, files)
    try:
        loadgen.start()
        _wait_for(loadgen, sut)
    finally:
        if loadgen.ident is None or loadgen.returned.is_set():  # LoadGen uses them till then
            lg.DestroyQSL(qsl_handle)
            lg.DestroySUT(sut_handle)
    if loadgen.errors:
        raise AsicperfError(f"LoadGen's test failed: {first_line(loadgen.errors[0])}")
    if sut.failure is not None:
        raise sut.failure.as_error()
    return sut.timing(), read_detail_log(files.detail)


def _wait_for(loadgen: _LoadgenTest, sut: BatchSut) -> None:
    """Until LoadGen's test returns. On Ctrl-C the SUT stops serving, so LoadGen finishes
    soon (a Server run still keeps its schedule to the end); a second Ctrl-C leaves at once.
    An event, not `Thread.join`: a join interrupted by Ctrl-C can report the thread finished
    while it still runs (CPython before 3.13), and LoadGen's objects must outlive its test."""
    try:
        loadgen.returned.wait()
    except KeyboardInterrupt as interrupt:
        sut.stop(interrupt)
        loadgen.returned.wait()


class _LoadgenTest(threading.Thread):
    """LoadGen's blocking test call, on a thread of its own so that Ctrl-C reaches the
    caller's (a signal waits while the main thread is inside LoadGen)."""

    def __init__(
        self, sut_handle: int, qsl_handle: int, test: lg.TestSettings, files: LoadgenLogFiles
    ) -> None:
        super().__init__(name="loadgen-test", daemon=True)
        self._handles = (sut_handle, qsl_handle)
        self._test = test
        self._files = files
        self.errors: list[BaseException] = []
        self.returned = threading.Event()

    def run(self) -> None:
        try:
            logs = log_settings(self._files, trace=_traced(self._test))
            lg.StartTestWithLogSettings(*self._handles, self._test, logs, NO_AUDIT_CONFIG)
        except BaseException as error:  # reported by run_sut, on the caller's thread
            self.errors.append(error)
        finally:
            self.returned.set()


def _traced(test: lg.TestSettings) -> bool:
    """Whether LoadGen writes its trace: for a token-latency performance run, whose samples'
    timings are read from it (token_run.py)."""
    return test.use_token_latencies and test.mode == lg.TestMode.PerformanceOnly


def _in_memory(indices: Sequence[int]) -> None:
    """The QSL's load and unload callbacks: the input batches are in memory already."""
