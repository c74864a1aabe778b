"""Adaptive microbenchmark timing: warm up, sample until the median is stable, report spread.

The method follows NVBench: a fixed sample count either wastes time on quiet kernels or
under-samples noisy ones, so sampling continues until the relative noise (IQR / median)
falls under a target, bounded below by a minimum sample count and time and above by a
hard time limit. A result that never settles is returned anyway but flagged ``noisy``.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Clock(Protocol):
    """Host clock; injectable so the stopping rule can be tested with scripted time."""

    def now(self) -> float:
        """Current time in seconds."""
        ...


class DeviceTimer(Protocol):
    """Device-side timer (CUDA-event style): host timing would include launch and sync cost."""

    def start(self) -> None:
        """Record the start event before the call."""
        ...

    def stop(self) -> float:
        """Record the stop event after the call and return the elapsed device time in seconds."""
        ...


class PerfCounterClock:
    """Default clock: ``time.perf_counter`` is monotonic and has the finest host resolution."""

    def now(self) -> float:
        return time.perf_counter()


@dataclass(frozen=True)
class TimingPolicy:
    """When to stop warming up and sampling."""

    warmup_s: float = 0.05
    min_samples: int = 10
    min_time_s: float = 0.1
    max_time_s: float = 5.0
    target_noise: float = 0.05
    flush_cache_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("warmup_s", "min_time_s", "max_time_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_time_s <= 0:
            raise ValueError(f"max_time_s must be > 0, got {self.max_time_s}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {self.min_samples}")
        if self.min_time_s > self.max_time_s:
            raise ValueError(
                f"min_time_s ({self.min_time_s}) must not exceed max_time_s ({self.max_time_s})"
            )
        if not self.target_noise > 0:
            raise ValueError(f"target_noise must be > 0, got {self.target_noise}")
        if self.flush_cache_bytes < 0:
            raise ValueError(f"flush_cache_bytes must be >= 0, got {self.flush_cache_bytes}")


@dataclass(frozen=True)
class Timing:
    """Per-call latency statistics in seconds, with the raw samples kept for later analysis."""

    samples: tuple[float, ...]
    median: float
    mean: float
    p10: float
    p90: float
    iqr: float
    cv: float
    noise: float
    noisy: bool
    warmup_calls: int
    total_s: float

    @classmethod
    def from_samples(
        cls, samples: tuple[float, ...], *, noisy: bool, warmup_calls: int, total_s: float
    ) -> Timing:
        """Compute the statistics from raw samples."""
        if not samples:
            raise ValueError("at least one sample is required")
        median = quantile(samples, 0.5)
        mean = sum(samples) / len(samples)
        iqr = quantile(samples, 0.75) - quantile(samples, 0.25)
        std = math.sqrt(sum((s - mean) ** 2 for s in samples) / len(samples))
        return cls(
            samples=samples,
            median=median,
            mean=mean,
            p10=quantile(samples, 0.1),
            p90=quantile(samples, 0.9),
            iqr=iqr,
            cv=std / mean if mean > 0 else 0.0,
            noise=relative_noise(samples),
            noisy=noisy,
            warmup_calls=warmup_calls,
            total_s=total_s,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready record; latencies in microseconds, the unit kernels are usually read in."""
        return {
            "latency_us": {
                "median": self.median * 1e6,
                "mean": self.mean * 1e6,
                "p10": self.p10 * 1e6,
                "p90": self.p90 * 1e6,
                "iqr": self.iqr * 1e6,
            },
            "cv": self.cv,
            "noise": self.noise,
            "noisy": self.noisy,
            "samples": len(self.samples),
            "warmup_calls": self.warmup_calls,
            "total_s": self.total_s,
            "samples_us": [s * 1e6 for s in self.samples],
        }


def quantile(values: tuple[float, ...] | list[float], q: float) -> float:
    """Linearly interpolated quantile (NumPy's default), so results are reproducible exactly."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def relative_noise(samples: tuple[float, ...] | list[float]) -> float:
    """IQR / median: robust to the rare outliers (interrupts, clock ticks) that inflate std."""
    median = quantile(samples, 0.5)
    if median <= 0:
        return 0.0 if quantile(samples, 0.75) == quantile(samples, 0.25) else math.inf
    return (quantile(samples, 0.75) - quantile(samples, 0.25)) / median


def cache_flusher(nbytes: int) -> Callable[[], None]:
    """Return a function that writes every byte of an ``nbytes`` buffer, evicting cached data."""
    buffer = (ctypes.c_char * nbytes)()
    state = {"value": 0}

    def flush() -> None:
        # Alternate the written value so no layer can skip the store as redundant.
        state["value"] ^= 1
        ctypes.memset(buffer, state["value"], nbytes)

    return flush


def measure(
    run: Callable[[], None],
    policy: TimingPolicy,
    clock: Clock | None = None,
    *,
    device_timer: DeviceTimer | None = None,
    flush: Callable[[], None] | None = None,
) -> Timing:
    """Time ``run`` under ``policy``.

    Warm-up calls ``run`` until ``warmup_s`` has passed (at least once). Sampling then times
    one call per sample and stops once ``min_samples`` and ``min_time_s`` are met and the
    relative noise is at most ``target_noise``, or when ``max_time_s`` of sampling has passed
    (checked after each sample, so it is overrun by at most one sample); in the latter case
    the result is ``noisy``. With ``device_timer`` each sample is the device-measured time;
    the host clock still governs warm-up and the limits. The cache flush (``flush``, or a
    buffer of ``flush_cache_bytes``) runs before every sample, outside the timed region.
    """
    host = clock if clock is not None else PerfCounterClock()
    if flush is None and policy.flush_cache_bytes > 0:
        flush = cache_flusher(policy.flush_cache_bytes)

    start = host.now()
    warmup_calls = 0
    while True:
        run()
        warmup_calls += 1
        if host.now() - start >= policy.warmup_s:
            break

    samples: list[float] = []
    sampling_start = host.now()
    settled = False
    while True:
        if flush is not None:
            flush()
        if device_timer is not None:
            device_timer.start()
            run()
            samples.append(device_timer.stop())
        else:
            t0 = host.now()
            run()
            samples.append(host.now() - t0)
        elapsed = host.now() - sampling_start
        if (
            len(samples) >= policy.min_samples
            and elapsed >= policy.min_time_s
            and relative_noise(samples) <= policy.target_noise
        ):
            settled = True
            break
        if elapsed >= policy.max_time_s:
            break

    return Timing.from_samples(
        tuple(samples), noisy=not settled, warmup_calls=warmup_calls, total_s=host.now() - start
    )
