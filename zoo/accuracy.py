"""Accuracy on real data: a zoo model's task metric over its dataset, computed through whatever
runs it (a target's session), and a detailed drift report for models judged by drift alone.
A speed number is only worth quoting next to one of these."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
import onnx_ir as oir

from ir.drift import (
    HISTOGRAM_BINS,
    OutputDrift,
    difference_histogram,
    outputs_drift,
    top1_agreement,
)
from ir.errors import AsicperfError
from ir.reference import run_reference
from zoo.cache import model_file
from zoo.catalog import ZOO

Feeds = dict[str, np.ndarray]
Run = Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class Accuracy:
    """A task metric's value over `samples` dataset items and whether it meets the bar."""

    metric: str
    value: float
    samples: int
    threshold: float
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _first(images: np.ndarray, fraction: float) -> np.ndarray:
    """The leading `fraction` of a dataset (at least one item): the splits are already shuffled."""
    return images[: max(1, round(len(images) * fraction))]


def _digits(fraction: float) -> tuple[Feeds, np.ndarray]:
    from zoo.datasets.digits import test_split

    images, labels = test_split()
    return {"pixels": _first(images, fraction)}, _first(labels, fraction)


@functools.cache
def _minilm_feeds() -> Feeds:
    """Every shipped sentence, tokenized to the zoo model's length, only the inputs it takes."""
    from zoo.datasets.sentences import tokenize

    entry = ZOO["all-minilm-l6-v2"]
    path = model_file(entry)
    inputs = {value.name for value in onnx.load(path, load_external_data=False).graph.input}
    tokens = tokenize(seq=entry.options["seq"])
    return {name: ids for name, ids in tokens.items() if name in inputs}


@functools.cache
def _minilm_reference() -> np.ndarray:
    """The FP32 embeddings of every sentence by the unoptimized model: computed once a process,
    the truth any optimized or ported run of MiniLM is compared with."""
    path = model_file(ZOO["all-minilm-l6-v2"])
    (embeddings,) = run_reference(oir.load(path), _minilm_feeds())
    return embeddings


def _minilm(fraction: float) -> tuple[Feeds, np.ndarray]:
    feeds = {name: _first(ids, fraction) for name, ids in _minilm_feeds().items()}
    return feeds, _first(_minilm_reference(), fraction)


def _top1(outputs: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
    return (outputs[0].argmax(axis=1) == labels).astype(np.float64)


def _cosines(outputs: Sequence[np.ndarray], reference: np.ndarray) -> np.ndarray:
    got, want = outputs[0].astype(np.float64), reference.astype(np.float64)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    return (got * want).sum(axis=1) / np.maximum(norms, 1e-30)


@dataclass(frozen=True)
class _Task:
    """A model's dataset (feeds and the truth per item) and its per-item score."""

    metric: str
    data: Callable[[float], tuple[Feeds, np.ndarray]]
    score: Callable[[Sequence[np.ndarray], np.ndarray], np.ndarray]


_TASKS: dict[str, _Task] = {
    "digits-cnn": _Task("top-1", _digits, _top1),
    "all-minilm-l6-v2": _Task("embedding-cosine", _minilm, _cosines),
}


def dataset_batches(
    model: str, batch_size: int, fraction: float
) -> Iterator[tuple[Feeds, np.ndarray]]:
    """(feeds, truth) per batch of the leading `fraction` of `model`'s dataset: truth is the
    labels (digits) or the reference embeddings (MiniLM). The last batch is padded to
    `batch_size` by repeating its last item, as fixed-batch compiled models need; its truth is
    not padded, so trim the outputs to `len(truth)`."""
    if model not in _TASKS:
        raise AsicperfError(
            f"zoo model '{model}' has no task dataset (those that do: {', '.join(_TASKS)})"
        )
    feeds, truth = _TASKS[model].data(fraction)
    for start in range(0, len(truth), batch_size):
        stop = min(start + batch_size, len(truth))
        missing = start + batch_size - stop
        batch = {
            name: np.concatenate(
                [values[start:stop], np.repeat(values[stop - 1 : stop], missing, 0)]
            )
            for name, values in feeds.items()
        }
        yield batch, truth[start:stop]


def task_accuracy(
    model: str, run: Run, batch_size: int, fraction: float, threshold: float
) -> Accuracy | None:
    """`model`'s task metric with its outputs from `run` (None when it has no task dataset).
    MiniLM is scored by mean cosine to the FP32 reference embeddings, computed here once."""
    task = _TASKS.get(model)
    if task is None:
        return None
    scores = []
    for feeds, truth in dataset_batches(model, batch_size, fraction):
        outputs = [output[: len(truth)] for output in run(feeds)]
        scores.append(task.score(outputs, truth))
    values = np.concatenate(scores)
    value = float(values.mean())
    return Accuracy(task.metric, value, len(values), threshold, passed=value >= threshold)


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
