"""Calibration observers and int8 arithmetic for post-training quantization.

An observer sees every calibration batch of one tensor and picks the range that int8 must
cover: the plain min/max (no value clipped, but one outlier stretches the scale for all), a
percentile (clips a fixed share of outliers) or the entropy threshold (TensorRT's choice: the
clipping point whose 128-level quantized histogram loses the least information, by KL
divergence). Entropy keeps a histogram; percentile keeps the values (float32) to be exact.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

ObserverName = Literal["minmax", "percentile", "entropy"]
ActivationMode = Literal["symmetric", "asymmetric"]

INT8_MAX = 127
UINT8_MAX = 255
HISTOGRAM_BINS = 2048
QUANTIZED_LEVELS = 128
_KL_EPSILON = 1e-4


@dataclass(frozen=True)
class ActivationQuantization:
    """Per-tensor parameters: x ≈ (q - zero_point) * scale, q int8 (symmetric) or uint8."""

    scale: float
    zero_point: int
    dtype: type[np.integer]


class RangeObserver(ABC):
    """Watches one tensor over the calibration set; `range` is the interval to quantize."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.seen_min = math.inf
        self.seen_max = -math.inf

    def update(self, array: np.ndarray) -> None:
        values = np.asarray(array, dtype=np.float64).ravel()
        if values.size == 0:
            return
        self.seen_min = min(self.seen_min, float(values.min()))
        self.seen_max = max(self.seen_max, float(values.max()))
        self._update(values)

    @property
    def seen(self) -> bool:
        return self.seen_min <= self.seen_max

    def range(self, symmetric: bool) -> tuple[float, float]:
        """The range to quantize: (-t, t) when symmetric, else within (seen_min, seen_max)."""
        if not self.seen:
            raise ValueError(f"{self.name} observer saw no values")
        return self._range(symmetric)

    def _update(self, values: np.ndarray) -> None:  # noqa: B027 - min-max needs nothing more
        """Fold one batch (flat float64) into the observer's state."""

    @abstractmethod
    def _range(self, symmetric: bool) -> tuple[float, float]: ...


class MinMax(RangeObserver):
    """Every value seen stays representable."""

    name = "minmax"

    def _range(self, symmetric: bool) -> tuple[float, float]:
        if symmetric:
            bound = max(abs(self.seen_min), abs(self.seen_max))
            return -bound, bound
        return self.seen_min, self.seen_max


class Percentile(RangeObserver):
    """The p-th percentile of |x| (symmetric), or of each tail (asymmetric)."""

    name = "percentile"

    def __init__(self, percentile: float) -> None:
        super().__init__()
        self.percentile = percentile
        self._batches: list[np.ndarray] = []

    def _update(self, values: np.ndarray) -> None:
        self._batches.append(values.astype(np.float32))

    def _range(self, symmetric: bool) -> tuple[float, float]:
        values = np.concatenate(self._batches).astype(np.float64)
        if symmetric:
            bound = float(np.percentile(np.abs(values), self.percentile))
            return -bound, bound
        low, high = np.percentile(values, [100 - self.percentile, self.percentile])
        return float(low), float(high)


class _MagnitudeHistogram:
    """A histogram of positive magnitudes with HISTOGRAM_BINS bins from 0 whose width doubles
    as larger values arrive (pairs of bins merge), so batches need not be seen twice to know
    the maximum."""

    def __init__(self) -> None:
        self.width = 0.0
        self.counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)

    def update(self, magnitudes: np.ndarray) -> None:
        top = float(magnitudes.max())
        if self.width == 0.0:
            self.width = top / HISTOGRAM_BINS
        while top > self.width * HISTOGRAM_BINS:
            self.counts = np.concatenate(
                [self.counts.reshape(-1, 2).sum(axis=1), np.zeros(HISTOGRAM_BINS // 2, np.int64)]
            )
            self.width *= 2
        bins = np.minimum((magnitudes / self.width).astype(np.int64), HISTOGRAM_BINS - 1)
        self.counts += np.bincount(bins, minlength=HISTOGRAM_BINS)


def _kl_divergence(sliced: np.ndarray, outliers: float, levels: int) -> float:
    """KL(P || Q) for a threshold at the end of `sliced` (the histogram up to it): P is `sliced`
    with the `outliers` past it clipped into its last bin; Q is `sliced` merged into `levels`
    equal groups (the last takes the remainder), each group's mass spread evenly over the bins
    where P is non-empty. Zeros are smoothed, so a bin Q misses costs instead of breaking it."""
    reference = sliced.astype(np.float64)
    reference[-1] += outliers
    group = np.minimum(np.arange(sliced.size) // (sliced.size // levels), levels - 1)
    nonzero = reference != 0
    mass = np.bincount(group, weights=sliced, minlength=levels)
    share = np.bincount(group, weights=nonzero, minlength=levels)
    expanded = np.where(nonzero, mass[group] / np.maximum(share[group], 1), 0.0)
    p = reference / reference.sum()
    q = expanded / max(expanded.sum(), 1.0)
    where = p > 0
    return float(np.sum(p[where] * np.log(p[where] / np.maximum(q[where], _KL_EPSILON))))


class Entropy(RangeObserver):
    """TensorRT's entropy calibration: of the thresholds at bin edges 128..2048 of the |x|
    histogram, the one whose clipped, 128-level quantized distribution has the least KL
    divergence from the original. Asymmetric ranges clip each side at that threshold."""

    name = "entropy"

    def __init__(self) -> None:
        super().__init__()
        self._histogram = _MagnitudeHistogram()

    def _update(self, values: np.ndarray) -> None:
        # Zeros are exact at any scale, and the spike a ReLU leaves at 0 would otherwise
        # dominate the divergence and pull the threshold far below the real values.
        magnitudes = np.abs(values[values != 0])
        if magnitudes.size:
            self._histogram.update(magnitudes)

    def threshold(self) -> float:
        """The chosen clipping point for |x|, at most the largest |x| seen."""
        counts = self._histogram.counts
        used = int(np.flatnonzero(counts).max()) + 1 if counts.any() else 0
        peak = max(abs(self.seen_min), abs(self.seen_max))
        # A few distinct magnitudes (an image's 17 grey levels) fit the grid unclipped, and the
        # KL search over a handful of spikes would clip them all but the first.
        if used <= QUANTIZED_LEVELS or np.count_nonzero(counts) <= QUANTIZED_LEVELS:
            return peak
        best_bins, best_divergence = used, math.inf
        for bins in range(QUANTIZED_LEVELS, used + 1):
            outliers = float(counts[bins:].sum())
            divergence = _kl_divergence(counts[:bins], outliers, QUANTIZED_LEVELS)
            if divergence < best_divergence:
                best_bins, best_divergence = bins, divergence
        return min(best_bins * self._histogram.width, peak)

    def _range(self, symmetric: bool) -> tuple[float, float]:
        bound = self.threshold()
        if symmetric:
            return -bound, bound
        return max(self.seen_min, -bound), min(self.seen_max, bound)


def make_observer(name: str, percentile: float) -> RangeObserver:
    if name == "minmax":
        return MinMax()
    if name == "percentile":
        return Percentile(percentile)
    if name == "entropy":
        return Entropy()
    raise ValueError(f"unknown observer '{name}'")


def activation_quantization(low: float, high: float, symmetric: bool) -> ActivationQuantization:
    """Scale and zero point covering [low, high]: int8 with zero point 0 for a symmetric range,
    uint8 over the range widened to include 0 (so 0 is exact, as padding needs) otherwise. An
    empty range (a constant-zero tensor) takes scale 1."""
    if symmetric:
        bound = max(abs(low), abs(high))
        return ActivationQuantization(bound / INT8_MAX if bound > 0 else 1.0, 0, np.int8)
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        return ActivationQuantization(1.0, 0, np.uint8)
    scale = (high - low) / UINT8_MAX
    zero_point = int(np.clip(round(-low / scale), 0, UINT8_MAX))
    return ActivationQuantization(scale, zero_point, np.uint8)


def per_channel_scales(weight: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 scale per slice along `axis`: max|w| / 127 (1 for an all-zero slice)."""
    others = tuple(i for i in range(weight.ndim) if i != axis)
    peak = np.abs(weight).max(axis=others).astype(np.float32)
    return np.where(peak > 0, peak / np.float32(INT8_MAX), np.float32(1.0)).astype(np.float32)


def quantize_per_channel(weight: np.ndarray, scales: np.ndarray, axis: int) -> np.ndarray:
    """`weight` as int8 in [-127, 127] with one scale per slice along `axis`."""
    shape = [1] * weight.ndim
    shape[axis] = -1
    scaled = np.round(weight / scales.reshape(shape))
    return np.clip(scaled, -INT8_MAX, INT8_MAX).astype(np.int8)
