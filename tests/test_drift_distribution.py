"""The drift figures the pass audit adds beyond max/mean/cosine: the histogram of differences
and the top-1 agreement of classifier outputs."""

from __future__ import annotations

import numpy as np

from ir.drift import difference_histogram, drift_record, top1_agreement


def test_histogram_bins_the_signed_differences_symmetrically() -> None:
    reference = np.zeros(6, np.float32)
    candidate = np.array([-1.0, -0.5, 0.0, 0.0, 0.5, 1.0], np.float32)
    histogram = difference_histogram(reference, candidate, bins=4)
    assert histogram is not None
    assert histogram.edges == (-1.0, -0.5, 0.0, 0.5, 1.0)
    assert histogram.counts == (1, 1, 2, 2)  # numpy's last bin is closed: 0.5 and 1.0


def test_identical_outputs_put_everything_in_the_middle_bin() -> None:
    values = np.arange(8, dtype=np.float32)
    histogram = difference_histogram(values, values, bins=5)
    assert histogram is not None and histogram.counts == (0, 0, 8, 0, 0)


def test_histogram_refuses_outputs_that_do_not_line_up() -> None:
    assert difference_histogram(np.zeros(3), np.zeros(4)) is None
    assert difference_histogram(np.array(["a"]), np.array(["a"])) is None


def test_top1_agreement_counts_rows_with_the_same_winner() -> None:
    reference = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    candidate = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.7, 0.3]], np.float32)
    assert top1_agreement(reference, candidate) == 0.75
    assert top1_agreement(reference[:, :1], candidate[:, :1]) is None  # one class: no ranking
    assert top1_agreement(reference[0], candidate[0]) is None  # no row axis
    labels = np.array([[1, 0]], np.int64)
    assert top1_agreement(labels, labels) is None  # not scores


def test_the_audit_record_carries_all_three() -> None:
    reference = [np.array([[1.0, 2.0]], np.float32), np.array([3], np.int64)]
    candidate = [np.array([[1.0, 2.5]], np.float32), np.array([3], np.int64)]
    first, second = drift_record(reference, candidate)
    assert first["max_abs"] == 0.5 and first["top1_agreement"] == 1.0
    assert sum(first["histogram"]["counts"]) == 2
    assert second["top1_agreement"] is None and second["max_abs"] == 0.0
