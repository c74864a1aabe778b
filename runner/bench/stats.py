"""asicperf's own latency statistics, for what LoadGen does not report: the session's time per
batch (the SUT's clock, without LoadGen's queueing; the latency an offline batch size is held
to its bound by) and the spreads the reports draw from raw samples. LoadGen's own figures are
never recomputed here (runner/loadgen/performance.py reads them).

Percentiles use the nearest-rank method (the value at rank ceil(p/100 * n) of the sorted
sample, no interpolation): every reported latency is one that really happened."""

from __future__ import annotations

import math
from collections.abc import Sequence

from runner.results.model import LatencyStats


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sample; p in (0, 100]."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_stats(latencies_ms: Sequence[float]) -> LatencyStats:
    ordered = sorted(latencies_ms)
    return LatencyStats(
        mean=sum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p99=percentile(ordered, 99),
        min=ordered[0],
        max=ordered[-1],
    )
