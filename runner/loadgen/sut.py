"""asicperf's System Under Test: one synchronous session, serving each query as LoadGen
issues it, on LoadGen's issue thread, one sample after another.

Serving inside LoadGen's issue callback adds about 2 µs to a query here; handing each query
to another thread through a queue added about 30 µs (two thread switches), which would show
in every latency of a fast model. It is also exactly a single server with a
FIFO queue: while the session is busy LoadGen cannot issue, a Server query that was due in
the meantime is issued as soon as the session is free, and LoadGen counts its latency from
its scheduled time, so the wait is in it.

LoadGen waits for every sample it issued, and an exception must not escape its callback (it
would end the process), so every sample is completed whatever happens: when the session
raises, the failure is recorded, that sample and every later one complete at once with an
empty response, and the caller raises the failure after LoadGen returns (run.py). `stop` does
the same from another thread, for Ctrl-C. A run never hangs on a failed session and never
loses its error. In a token run LoadGen also needs each sample's first token before its
completion: without one it logs an error and reads a first-token latency it never recorded
(a failed run without these ended in a segmentation fault here), so a sample the SUT does not
serve reports an empty first token first; a token server reports its own, even when it fails.

The SUT also keeps its own timings, which LoadGen does not expose: each query's latency
(issue -> its last sample complete), each batch's serve time, and the span of the run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import mlperf_loadgen as lg
import numpy as np

from runner.loadgen.failure import SessionFailure
from runner.loadgen.progress import Goal, RunCounts, Tick
from runner.loadgen.serving import SampleServer, TokenResponse


@dataclass(frozen=True)
class SutTiming:
    """The SUT's own clock on a run (perf_counter, in issue order)."""

    query_latencies_ms: tuple[float, ...]  # issue -> the query's last sample complete
    batch_ms: tuple[float, ...]  # each sample's serve time: the session alone
    duration_s: float  # the first issue -> the last completion


class BatchSut:
    """Hand `issue` and `flush` to `lg.ConstructSUT`. `tick` is called on LoadGen's thread.
    `first_tokens`: the run uses token latencies (the test's `use_token_latencies`)."""

    def __init__(
        self, serve: SampleServer, goal: Goal, tick: Tick, *, first_tokens: bool = False
    ) -> None:
        self._serve = serve
        self._first_tokens = first_tokens
        self._goal = goal
        self._tick = tick
        self.failure: SessionFailure | None = None
        self._query_ms: list[float] = []
        self._batch_ms: list[float] = []
        self._first_issue: float | None = None
        self._last_done = 0.0
        self._samples_issued = 0
        self._samples_done = 0

    def issue(self, samples: Sequence[lg.QuerySample]) -> None:
        """LoadGen's issue callback: serve and complete every sample of the query, in order."""
        issued_at = time.perf_counter()
        if self._first_issue is None:
            self._first_issue = issued_at
        first_issue = self._first_issue
        self._samples_issued += len(samples)
        last = len(samples) - 1
        for position, sample in enumerate(samples):
            started = time.perf_counter()
            served = self._served(sample)
            self._batch_ms.append((time.perf_counter() - started) * 1e3)
            self._complete(sample, served)
            if position == last:
                self._query_ms.append((self._last_done - issued_at) * 1e3)
            self._report_progress(self._last_done - first_issue)

    def flush(self) -> None:
        """LoadGen's flush callback: nothing is held back, so nothing to flush."""

    def stop(self, reason: BaseException) -> None:
        """Serve nothing more (from any thread): LoadGen's remaining samples complete at once,
        and `reason` is the run's failure unless the session failed first."""
        self._fail("the LoadGen run", reason)

    def timing(self) -> SutTiming:
        start = self._last_done if self._first_issue is None else self._first_issue
        return SutTiming(tuple(self._query_ms), tuple(self._batch_ms), self._last_done - start)

    def _served(self, sample: lg.QuerySample) -> bytes | TokenResponse:
        """The sample's response; empty once anything failed (the sample is not run)."""
        if self.failure is None:
            try:
                return self._serve(sample)
            except BaseException as error:  # nothing may escape LoadGen's callback
                self._fail(f"batch {sample.index} under LoadGen", error)
                return b""
        if self._first_tokens:
            lg.FirstTokenComplete([lg.QuerySampleResponse(sample.id, 0, 0)])
        return b""

    def _complete(self, sample: lg.QuerySample, served: bytes | TokenResponse) -> None:
        data, tokens = (
            (served.data, served.token_count) if isinstance(served, TokenResponse) else (served, 0)
        )
        if data:  # the array keeps the bytes alive while LoadGen copies them into its log
            buffer = np.frombuffer(data, dtype=np.uint8)
            response = lg.QuerySampleResponse(sample.id, buffer.ctypes.data, buffer.size, tokens)
        else:
            response = lg.QuerySampleResponse(sample.id, 0, 0, tokens)
        lg.QuerySamplesComplete([response])
        self._last_done = time.perf_counter()
        self._samples_done += 1

    def _report_progress(self, elapsed_s: float) -> None:
        if self.failure is not None:
            return
        counts = RunCounts(
            elapsed_s=elapsed_s,
            queries_done=len(self._query_ms),
            samples_done=self._samples_done,
            samples_issued=self._samples_issued,
        )
        try:
            self._tick(self._goal(counts))
        except BaseException as error:  # nothing may escape LoadGen's callback
            self._fail("the progress callback", error)

    def _fail(self, what: str, error: BaseException) -> None:
        if self.failure is None:
            self.failure = SessionFailure(what, error)
