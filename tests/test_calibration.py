"""Calibration observers and int8 arithmetic: exact ranges, scales and zero points."""

from __future__ import annotations

import numpy as np
import pytest

from passes.precision.calibration import (
    Entropy,
    MinMax,
    Percentile,
    activation_quantization,
    make_observer,
    per_channel_scales,
    quantize_per_channel,
)


def _observe(observer, data: np.ndarray, batches: int = 3):
    for batch in np.array_split(data, batches):
        observer.update(batch)
    return observer


def test_min_max_covers_every_value_seen_across_batches() -> None:
    observer = _observe(MinMax(), np.array([-1.0, 2.0, 0.5, -3.0, 1.5, 0.0]))
    assert (observer.seen_min, observer.seen_max) == (-3.0, 2.0)
    assert observer.range(symmetric=True) == (-3.0, 3.0)
    assert observer.range(symmetric=False) == (-3.0, 2.0)


def test_percentile_of_magnitudes_and_of_each_tail() -> None:
    data = np.arange(-100.0, 101.0)  # |x| is 0 once and 1..100 twice
    observer = _observe(Percentile(90.0), np.random.default_rng(0).permutation(data))
    low, high = observer.range(symmetric=False)
    assert (low, high) == pytest.approx((-80.0, 80.0))  # the 10th and 90th of 201 values
    bound = np.percentile(np.abs(data), 90.0)
    assert bound == 90.0
    assert observer.range(symmetric=True) == pytest.approx((-90.0, 90.0))
    assert _observe(Percentile(100.0), data).range(symmetric=True) == (-100.0, 100.0)


def test_entropy_clips_a_heavy_tail_but_keeps_a_uniform_range() -> None:
    rng = np.random.default_rng(0)
    heavy = _observe(Entropy(), rng.standard_t(2, 200_000))
    peak = max(-heavy.seen_min, heavy.seen_max)
    assert heavy.threshold() < 0.2 * peak
    uniform = _observe(Entropy(), rng.uniform(-1.0, 1.0, 100_000))
    assert 0.99 <= uniform.threshold() <= 1.0


def test_entropy_ignores_the_zeros_a_relu_leaves() -> None:
    values = np.random.default_rng(0).uniform(-1.0, 1.0, 100_000)
    relu = _observe(Entropy(), np.maximum(values, 0.0))
    assert relu.threshold() >= 0.99 * relu.seen_max
    low, high = relu.range(symmetric=False)
    assert low == 0.0 and high == pytest.approx(relu.threshold())


def test_entropy_keeps_the_full_range_of_a_few_discrete_levels() -> None:
    # 17 grey levels in [0, 1], mostly dark: the KL search alone would clip at the first one.
    levels = np.random.default_rng(0).choice(np.arange(17) / 16, 50_000, p=_dark(17))
    assert _observe(Entropy(), levels).threshold() == 1.0


def _dark(levels: int) -> np.ndarray:
    weights = 0.5 ** np.arange(levels)
    return weights / weights.sum()


def test_an_observer_that_saw_nothing_says_so() -> None:
    with pytest.raises(ValueError, match="minmax observer saw no values"):
        MinMax().range(symmetric=True)
    with pytest.raises(ValueError, match="unknown observer 'kl'"):
        make_observer("kl", 99.0)


def test_symmetric_activations_are_int8_with_zero_point_zero() -> None:
    params = activation_quantization(-2.0, 1.27, symmetric=True)
    assert (params.scale, params.zero_point, params.dtype) == (2.0 / 127, 0, np.int8)


def test_asymmetric_activations_are_uint8_with_zero_exact() -> None:
    params = activation_quantization(-1.0, 3.0, symmetric=False)
    assert (params.scale, params.zero_point, params.dtype) == (4.0 / 255, 64, np.uint8)
    # A range above zero is widened down to it, so 0 stays representable.
    positive = activation_quantization(0.5, 2.0, symmetric=False)
    assert (positive.scale, positive.zero_point) == (2.0 / 255, 0)
    assert activation_quantization(0.0, 0.0, symmetric=True).scale == 1.0


def test_per_channel_weight_scales_and_values() -> None:
    weight = np.array([[1.0, -2.0], [0.5, 4.0], [0.0, 0.0]], np.float32)
    columns = per_channel_scales(weight, axis=1)
    np.testing.assert_array_equal(columns, np.float32([1.0, 4.0]) / np.float32(127))
    rows = per_channel_scales(weight, axis=0)
    np.testing.assert_array_equal(rows, np.float32([2 / 127, 4 / 127, 1.0]))
    # Halves round to even, as QuantizeLinear does: 0.5 * 127 = 63.5 -> 64.
    np.testing.assert_array_equal(
        quantize_per_channel(weight, columns, axis=1), [[127, -64], [64, 127], [0, 0]]
    )
