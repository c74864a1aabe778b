"""Timing method tests driven by a scripted clock, so every count and statistic is exact."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable

import pytest

from microbench.timing import Timing, TimingPolicy, cache_flusher, measure


class FakeClock:
    """Clock that only moves when the code under test advances it."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def scripted_run(
    clock: FakeClock, durations: Iterable[float]
) -> tuple[Callable[[], None], list[int]]:
    """A benchmarked call whose successive durations are ``durations`` (last one repeats)."""
    it = iter(durations)
    last = [0.0]
    calls = [0]

    def run() -> None:
        last[0] = next(it, last[0])
        calls[0] += 1
        clock.advance(last[0])

    return run, calls


def policy(**kw: float) -> TimingPolicy:
    base = dict(warmup_s=0.0, min_samples=5, min_time_s=0.0, max_time_s=1.0, target_noise=0.05)
    return TimingPolicy(**(base | kw))


def test_stops_at_min_samples_when_quiet() -> None:
    clock = FakeClock()
    run, _ = scripted_run(clock, [2**-10])
    t = measure(run, policy(min_samples=7), clock)
    assert t.samples == (2**-10,) * 7
    assert not t.noisy
    assert t.noise == 0.0


def test_min_time_extends_quiet_sampling() -> None:
    clock = FakeClock()
    run, _ = scripted_run(clock, [0.0625])  # binary-exact, so the sums are exact
    t = measure(run, policy(min_samples=2, min_time_s=0.5), clock)
    assert len(t.samples) == 8  # 8 x 62.5 ms reaches the 0.5 s minimum
    assert not t.noisy


def test_noisy_run_samples_until_max_time_and_is_flagged() -> None:
    clock = FakeClock()
    run, _ = scripted_run(clock, itertools.cycle([0.01, 0.03]))
    t = measure(run, policy(max_time_s=0.5), clock)
    assert t.noisy
    assert t.noise > 0.05
    assert sum(t.samples) >= 0.5  # it kept sampling up to the limit
    assert len(t.samples) > 5


def test_max_time_overrun_is_at_most_one_sample() -> None:
    clock = FakeClock()
    durations = [0.07, 0.2, 0.05, 0.3, 0.11] * 20
    run, _ = scripted_run(clock, durations)
    t = measure(run, policy(max_time_s=1.0), clock)
    spent = sum(t.samples)
    assert spent >= 1.0
    assert spent - t.samples[-1] < 1.0  # the limit was not yet reached before the last sample


def test_settles_after_initial_noise() -> None:
    clock = FakeClock()
    run, _ = scripted_run(clock, [0.05, 0.001] + [0.001] * 100)
    t = measure(run, policy(min_samples=3, target_noise=0.01), clock)
    assert not t.noisy
    assert t.median == pytest.approx(0.001)


def test_warmup_by_time_budget_exact_count() -> None:
    clock = FakeClock()
    run, calls = scripted_run(clock, [0.25])
    t = measure(run, policy(warmup_s=1.0, min_samples=3), clock)
    assert t.warmup_calls == 4  # 4 x 0.25 s reaches the 1 s budget
    assert calls[0] == 4 + 3
    assert t.total_s == pytest.approx(7 * 0.25)


def test_warmup_at_least_one_call() -> None:
    clock = FakeClock()
    run, _ = scripted_run(clock, [0.0])
    t = measure(run, policy(warmup_s=0.0, min_samples=1), clock)
    assert t.warmup_calls == 1


def test_statistics_exact_on_known_samples() -> None:
    t = Timing.from_samples(
        tuple(float(x) for x in range(1, 11)), noisy=False, warmup_calls=0, total_s=55.0
    )
    # Linear interpolation at (n - 1) * q on 1..10.
    assert t.median == pytest.approx(5.5)
    assert t.mean == pytest.approx(5.5)
    assert t.p10 == pytest.approx(1.9)
    assert t.p90 == pytest.approx(9.1)
    assert t.iqr == pytest.approx(7.75 - 3.25)
    assert t.cv == pytest.approx(math.sqrt(8.25) / 5.5)
    assert t.noise == pytest.approx(4.5 / 5.5)


def test_to_json_units_and_raw_samples() -> None:
    t = Timing.from_samples((1e-6, 2e-6, 3e-6), noisy=True, warmup_calls=2, total_s=1.0)
    doc = json.loads(json.dumps(t.to_json()))
    assert doc["latency_us"]["median"] == pytest.approx(2.0)
    assert set(doc["latency_us"]) == {"median", "mean", "p10", "p90", "iqr"}
    assert doc["samples"] == 3
    assert doc["samples_us"] == pytest.approx([1.0, 2.0, 3.0])
    assert doc["noisy"] is True
    assert "cv" in doc


def test_cache_flush_between_samples_outside_timed_region() -> None:
    clock = FakeClock()
    run, _ = scripted_run(clock, [0.001])
    events: list[str] = []
    inner_run = run

    def run_logged() -> None:
        events.append("run")
        inner_run()

    def flush() -> None:
        events.append("flush")
        clock.advance(0.5)  # a slow flush must not show up in any sample

    t = measure(run_logged, policy(min_samples=4, max_time_s=100.0), clock, flush=flush)
    assert t.samples == pytest.approx((0.001,) * 4)
    # Warm-up call first, then each sample preceded by exactly one flush.
    assert events == ["run"] + ["flush", "run"] * 4


def test_flush_cache_bytes_builds_a_flusher() -> None:
    flush = cache_flusher(1 << 16)
    flush()
    flush()
    clock = FakeClock()
    run, _ = scripted_run(clock, [0.001])
    t = measure(run, policy(flush_cache_bytes=1 << 16), clock)
    assert len(t.samples) == 5


class FakeDeviceTimer:
    """Device timer reporting scripted kernel times, independent of the host clock."""

    def __init__(self, times: list[float]) -> None:
        self.times = iter(times)
        self.open = False

    def start(self) -> None:
        assert not self.open
        self.open = True

    def stop(self) -> float:
        assert self.open
        self.open = False
        return next(self.times)


def test_device_timer_supplies_samples_host_clock_governs_limits() -> None:
    clock = FakeClock()
    run, calls = scripted_run(clock, [0.125])  # host sees 0.125 s per call (launch + sync)
    timer = FakeDeviceTimer([1e-5, 3e-5] * 100)  # noisy device times
    t = measure(run, policy(warmup_s=0.25, max_time_s=1.0), clock, device_timer=timer)
    assert t.warmup_calls == 2
    assert set(t.samples) == {1e-5, 3e-5}
    assert len(t.samples) == 8  # the host limit (8 x 0.125 s) ended sampling
    assert t.noisy
    assert calls[0] == 10


def test_device_timer_quiet_stops_early() -> None:
    clock = FakeClock()
    run, _ = scripted_run(clock, [0.1])
    t = measure(run, policy(), clock, device_timer=FakeDeviceTimer([2e-6] * 100))
    assert t.samples == (2e-6,) * 5
    assert not t.noisy


@pytest.mark.parametrize(
    "kw",
    [
        {"warmup_s": -1.0},
        {"min_time_s": -0.1},
        {"max_time_s": -1.0},
        {"max_time_s": 0.0},
        {"min_time_s": 2.0, "max_time_s": 1.0},
        {"target_noise": 0.0},
        {"target_noise": -0.1},
        {"min_samples": 0},
        {"flush_cache_bytes": -1},
    ],
)
def test_bad_policy_raises_one_line_value_error(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError) as err:
        policy(**kw)
    assert "\n" not in str(err.value)


def test_real_clock_smoke() -> None:
    t = measure(lambda: None, TimingPolicy(warmup_s=0.001, min_time_s=0.0, max_time_s=0.2))
    assert t.samples and t.median >= 0.0
