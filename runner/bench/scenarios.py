"""The three MLPerf LoadGen scenarios, for one synchronous session where a query is one batch.

Single-stream and offline both issue the next query when the previous one completes (with one
synchronous session the offline "all samples at once" query is exactly that); they differ in
the headline figure (latency vs throughput). Server issues queries at Poisson arrival times; a
query that arrives while the session is busy waits, and its latency counts from its arrival.
A run goes on until both the minimum duration and the minimum query count are met, or it hits
the maximum duration, which makes it INVALID.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ir.errors import AsicperfError
from runner.results.model import LatencyStats

SCENARIOS = ("single-stream", "offline", "server")


@dataclass(frozen=True)
class ScenarioSettings:
    """What a run must achieve to count, as in LoadGen's test settings."""

    scenario: str = "single-stream"
    min_duration_s: float = 2.0
    min_queries: int = 64
    latency_bound_ms: float | None = None
    server_qps: float | None = None  # samples per second offered in the server scenario
    max_duration_s: float = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise AsicperfError(f"scenario '{self.scenario}': expected one of {SCENARIOS}")
        if self.min_queries < 1 or self.min_duration_s < 0:
            raise AsicperfError("min queries must be ≥ 1 and min duration ≥ 0")
        if self.scenario == "server" and not (self.server_qps and self.server_qps > 0):
            raise AsicperfError("the server scenario needs an arrival rate: --server-qps > 0")
        if self.scenario == "server" and self.latency_bound_ms is None:
            raise AsicperfError("the server scenario needs a latency bound: --latency-bound MS")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Timing:
    """What a scenario measured: one latency per query, and the wall time of the whole run."""

    latencies_ms: tuple[float, ...]
    duration_s: float


Tick = Callable[[float], None]  # told the fraction of the minimum run done so far


def run_scenario(
    settings: ScenarioSettings, issue: Callable[[], object], samples_per_query: int, tick: Tick
) -> Timing:
    if settings.scenario == "server":
        return _poisson_arrivals(settings, issue, settings.server_qps / samples_per_query, tick)
    return _back_to_back(settings, issue, tick)


def _done(settings: ScenarioSettings, queries: int, elapsed: float, tick: Tick) -> bool:
    """Checked after a query completes, so the run's measured time covers the minimum: a rule
    on the schedule instead would stop before the last arrival and fall just short of it."""
    by_time = elapsed / settings.min_duration_s if settings.min_duration_s else 1.0
    tick(min(by_time, queries / settings.min_queries))
    enough = elapsed >= settings.min_duration_s and queries >= settings.min_queries
    return enough or elapsed >= settings.max_duration_s


def _back_to_back(settings: ScenarioSettings, issue: Callable[[], object], tick: Tick) -> Timing:
    latencies: list[float] = []
    start = time.perf_counter()
    while not _done(settings, len(latencies), time.perf_counter() - start, tick):
        sent = time.perf_counter()
        issue()
        latencies.append((time.perf_counter() - sent) * 1e3)
    return Timing(tuple(latencies), time.perf_counter() - start)


def _poisson_arrivals(
    settings: ScenarioSettings, issue: Callable[[], object], queries_per_s: float, tick: Tick
) -> Timing:
    """Arrivals are scheduled from the start, independent of completions, so an overloaded
    session builds a queue and the queueing time shows in the latencies."""
    rng = np.random.default_rng(settings.seed)
    latencies: list[float] = []
    start = time.perf_counter()
    arrival = start
    while not _done(settings, len(latencies), time.perf_counter() - start, tick):
        arrival += rng.exponential(1.0 / queries_per_s)
        wait = arrival - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        issue()
        latencies.append((time.perf_counter() - arrival) * 1e3)
    return Timing(tuple(latencies), time.perf_counter() - start)


def verdict(settings: ScenarioSettings, timing: Timing, latency: LatencyStats) -> tuple[bool, str]:
    """VALID or not, and why: each LoadGen rule that failed, or the rules that were met."""
    failed = []
    met = []
    duration = f"duration {distinct(timing.duration_s, settings.min_duration_s)} s"
    if timing.duration_s < settings.min_duration_s:
        failed.append(f"min duration: {duration} < {settings.min_duration_s:g} s")
    else:
        met.append(f"{duration} ≥ {settings.min_duration_s:g} s")
    queries = len(timing.latencies_ms)
    if queries < settings.min_queries:
        failed.append(f"min queries: {queries} < {settings.min_queries}")
    else:
        met.append(f"{queries} queries ≥ {settings.min_queries}")
    if settings.scenario == "server":
        p99 = f"p99 {distinct(latency.p99, settings.latency_bound_ms)} ms"
        if latency.p99 > settings.latency_bound_ms:
            failed.append(f"latency bound: {p99} > {settings.latency_bound_ms:g} ms")
        else:
            met.append(f"{p99} ≤ {settings.latency_bound_ms:g} ms")
    return not failed, "; ".join(failed or met)


def distinct(value: float, bound: float) -> str:
    """`value` with 3 significant digits, or as many more as it takes not to read as `bound`
    (a duration of 1.9996 s against a 2 s minimum is "1.9996", not "2")."""
    for digits in range(3, 18):
        text = f"{value:.{digits}g}"
        if value == bound or float(text) != bound:
            return text
    return repr(value)
