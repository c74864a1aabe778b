"""Whether two timing samples differ by more than run-to-run noise, so a comparison does not
sell a 2 % change between overlapping distributions as a speed-up.

The test is the two-sided Mann-Whitney U test: it assumes no distribution shape, which suits
latencies (skewed, with rare long outliers). The p-value comes from the normal approximation
with the tie correction of the variance and a continuity correction of 0.5 (the method of
scipy.stats.mannwhitneyu(..., method="asymptotic")); timing samples have tens to thousands of
values, where the approximation is close to the exact distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # below it, a difference is called significant
_SMALLEST_SHOWN_P = 0.001


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value that samples `a` and `b` come from the same distribution; 1.0 when
    every value is tied (nothing to tell them apart)."""
    if not a or not b:
        raise ValueError("the Mann-Whitney U test needs two non-empty samples")
    n_a, n_b = len(a), len(b)
    n = n_a + n_b
    _, position, counts = np.unique(
        np.concatenate([np.asarray(a, dtype=float), np.asarray(b, dtype=float)]),
        return_inverse=True,
        return_counts=True,
    )
    counts = counts.astype(float)
    # Tied values share the mean of the ranks they occupy: last rank - (count - 1) / 2.
    average_rank = np.cumsum(counts) - (counts - 1) / 2
    u = float(average_rank[position[:n_a]].sum()) - n_a * (n_a + 1) / 2
    ties = float((counts**3 - counts).sum()) / (n * (n - 1))
    variance = n_a * n_b / 12 * ((n + 1) - ties)
    if variance <= 0:
        return 1.0
    z = max(abs(u - n_a * n_b / 2) - 0.5, 0.0) / math.sqrt(variance)
    return math.erfc(z / math.sqrt(2))


def ranges_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the closed intervals (low, high) share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


@dataclass(frozen=True)
class Significance:
    """What the raw samples of two matched measurements say: the p-value (None without raw
    samples) and whether their p10..p90 ranges overlap (None when a range is unknown)."""

    p_value: float | None
    overlap: bool | None

    def note(self) -> str:
        overlap = "the p10..p90 ranges overlap"
        if self.p_value is None:
            unknown = "no raw samples: significance unknown"
            return f"{unknown}; {overlap}" if self.overlap else unknown
        p = _p_text(self.p_value)
        if self.p_value >= ALPHA:
            verdict = f"not significant ({p}): the distributions overlap"
            return f"{verdict}; {overlap}" if self.overlap else verdict
        return f"significant ({p}), but {overlap}" if self.overlap else f"significant ({p})"


def significance(
    a_samples: Sequence[float] | None,
    b_samples: Sequence[float] | None,
    a_range: tuple[float, float] | None,
    b_range: tuple[float, float] | None,
) -> Significance:
    """The test on raw samples where both sides kept them, and the p10..p90 overlap where both
    ranges are known."""
    p_value = mann_whitney_p(a_samples, b_samples) if a_samples and b_samples else None
    overlap = ranges_overlap(a_range, b_range) if a_range and b_range else None
    return Significance(p_value, overlap)


def _p_text(p: float) -> str:
    return f"p<{_SMALLEST_SHOWN_P}" if p < _SMALLEST_SHOWN_P else f"p={p:.2g}"
