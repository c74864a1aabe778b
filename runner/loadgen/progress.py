"""How far a LoadGen run is, for a progress bar: `Tick` is told a fraction in [0, 1] each time
a sample completes, on LoadGen's issue thread (sut.py).

LoadGen does not say when it will stop, so the fraction follows its rules: a performance run
ends once both its minimum duration and minimum query count are met, so the fraction is the
lesser of the two; an Offline run is its one query, so it is the share of that query's samples
done; an accuracy run issues every sample once, so it is the share of the samples done.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from runner.loadgen.settings import LoadgenSettings

Tick = Callable[[float], None]


@dataclass(frozen=True)
class RunCounts:
    """What the SUT has seen so far."""

    elapsed_s: float  # since the first query was issued
    queries_done: int
    samples_done: int
    samples_issued: int


Goal = Callable[[RunCounts], float]


def progress_goal(settings: LoadgenSettings, *, accuracy: bool, batch_count: int) -> Goal:
    """The fraction of the run done, as the run's rules measure it (see the module doc)."""
    if accuracy:
        return functools.partial(_share_of_samples, batch_count)
    if settings.scenario == "offline":
        return _share_of_query
    return functools.partial(_share_of_minimum, settings.min_duration_s, settings.min_queries)


def _share_of_samples(total: int, counts: RunCounts) -> float:
    # MultiStream pads its last accuracy query, so more than `total` samples may complete
    return min(1.0, counts.samples_done / total)


def _share_of_query(counts: RunCounts) -> float:
    return counts.samples_done / counts.samples_issued


def _share_of_minimum(min_duration_s: float, min_queries: int, counts: RunCounts) -> float:
    by_time = counts.elapsed_s / min_duration_s if min_duration_s else 1.0
    return min(1.0, by_time, counts.queries_done / min_queries)
