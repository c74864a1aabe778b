"""What the pass audit adds to each output's drift: the counts per histogram bin of the
differences and the top-1 agreement of classifier outputs."""

from __future__ import annotations

import numpy as np

from ir.drift import HISTOGRAM_BINS, drift_record, top1_agreement


def test_top1_agreement_counts_rows_with_the_same_winner() -> None:
    reference = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    candidate = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.7, 0.3]], np.float32)
    assert top1_agreement(reference, candidate) == 0.75
    assert top1_agreement(reference[:, :1], candidate[:, :1]) is None  # one class: no ranking
    assert top1_agreement(reference[0], candidate[0]) is None  # no row axis
    labels = np.array([[1, 0]], np.int64)
    assert top1_agreement(labels, labels) is None  # not scores


def test_the_audit_record_carries_histogram_and_top1() -> None:
    reference = [np.array([[1.0, 2.0]], np.float32), np.array([3], np.int64)]
    candidate = [np.array([[1.0, 2.5]], np.float32), np.array([3], np.int64)]
    first, second = drift_record(reference, candidate)
    assert first["max_abs"] == 0.5 and first["top1_agreement"] == 1.0
    counts = dict(zip(HISTOGRAM_BINS, first["histogram"], strict=True))
    assert counts["0"] == 1 and counts["[0.1, 1)"] == 1 and sum(counts.values()) == 2
    assert second["top1_agreement"] is None and second["max_abs"] == 0.0
