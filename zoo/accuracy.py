"""Accuracy on real data: a zoo model's task metric over its dataset, computed through whatever
runs it (a target's session), and a detailed drift report for models judged by drift alone.
A speed number is only worth quoting next to one of these. The task data and its scoring live
in zoo/task_data.py, so outputs produced elsewhere (LoadGen's accuracy log) are scored alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ir.drift import (
    HISTOGRAM_BINS,
    OutputDrift,
    difference_histogram,
    outputs_drift,
    top1_agreement,
)
from zoo.task_data import Accuracy, task_data

Run = Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]


def task_accuracy(
    model: str, run: Run, batch_size: int, fraction: float, threshold: float
) -> Accuracy | None:
    """`model`'s task metric with its outputs from `run`, called once per batch of its task
    data (None when it has no task dataset)."""
    data = task_data(model, batch_size, fraction, threshold)
    if data is None:
        return None
    return data.score([run(feeds) for feeds in data.batches])


@dataclass(frozen=True)
class DriftReport:
    """Per output: drift statistics and where its element errors fall, so one outlier and a
    uniform small error, which can share a max_abs, look different."""

    drift: tuple[OutputDrift, ...]
    histograms: tuple[tuple[int, ...], ...]
    top1: tuple[float | None, ...]  # classifier outputs only

    def to_json(self) -> dict[str, Any]:
        return {
            "bins": list(HISTOGRAM_BINS),
            "outputs": [
                {**drift.to_json(), "histogram": list(histogram), "top1_agreement": top1}
                for drift, histogram, top1 in zip(
                    self.drift, self.histograms, self.top1, strict=True
                )
            ],
        }


def drift_report(reference: list[np.ndarray], candidate: list[np.ndarray]) -> DriftReport:
    """Drift of `candidate` outputs against `reference`, output by output."""
    return DriftReport(
        tuple(outputs_drift(reference, candidate)),
        tuple(
            difference_histogram(ref, got) for ref, got in zip(reference, candidate, strict=True)
        ),
        tuple(top1_agreement(ref, got) for ref, got in zip(reference, candidate, strict=True)),
    )
