"""A zoo model's accuracy task as data: its dataset cut into the batches a fixed-batch session
runs, the truth for each batch, the outputs expected back, and the metric computed from those
outputs alone. Scoring never calls the model, so outputs from anywhere (a session run batch by
batch here, or LoadGen's accuracy run read back from its log) give the same number."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as oir

from ir.errors import AsicperfError
from ir.reference import run_reference
from zoo.cache import model_file
from zoo.catalog import ZOO

Feeds = dict[str, np.ndarray]
ItemScores = Callable[[Sequence[np.ndarray], np.ndarray], np.ndarray]


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


@functools.cache
def _graph_io(model: str) -> tuple[frozenset[str], tuple[onnx.ValueInfoProto, ...]]:
    """The zoo model's input names and output declarations, read without its weights."""
    graph = onnx.load(model_file(ZOO[model]), load_external_data=False).graph
    return frozenset(value.name for value in graph.input), tuple(graph.output)


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

    inputs, _ = _graph_io("all-minilm-l6-v2")
    tokens = tokenize(seq=ZOO["all-minilm-l6-v2"].options["seq"])
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
    score: ItemScores


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


@dataclass(frozen=True)
class OutputSpec:
    """One model output as a session at the task's batch size returns it: what a log of raw
    response bytes needs to turn them back into arrays."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]


def _output_specs(model: str, batch_size: int) -> tuple[OutputSpec, ...]:
    """The model's outputs in graph order, the leading (batch) dimension set to `batch_size`."""
    specs = []
    for output in _graph_io(model)[1]:
        tensor = output.type.tensor_type
        rest = tensor.shape.dim[1:]
        if not all(dim.HasField("dim_value") for dim in rest):
            raise AsicperfError(
                f"zoo model '{model}' output '{output.name}' has a symbolic dimension past the "
                "batch: its shape at a batch size is unknown"
            )
        shape = (batch_size, *(dim.dim_value for dim in rest))
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        specs.append(OutputSpec(output.name, dtype, shape))
    return tuple(specs)


@dataclass(frozen=True, eq=False)
class TaskData:
    """A model's task at one batch size: `batches` to run, in order, each `batch_size` items,
    the last one padded by repeating its last real item; `truths[i]` holds the truth for the
    real items of batch i only, so the padded outputs are dropped and every item is scored
    exactly once."""

    model: str
    metric: str
    threshold: float
    batch_size: int
    batches: tuple[Feeds, ...]
    truths: tuple[np.ndarray, ...]
    outputs: tuple[OutputSpec, ...]
    item_scores: ItemScores = field(repr=False)

    @property
    def items(self) -> tuple[int, ...]:
        """The number of real (not padding) items in each batch."""
        return tuple(len(truth) for truth in self.truths)

    def score(self, outputs_per_batch: Sequence[Sequence[np.ndarray]]) -> Accuracy:
        """The metric from each batch's outputs (in `outputs` order), batches in order."""
        if len(outputs_per_batch) != len(self.batches):
            raise AsicperfError(
                f"task '{self.model}' at batch {self.batch_size} has {len(self.batches)} "
                f"batches, got outputs for {len(outputs_per_batch)}"
            )
        scores = []
        for index, (outputs, truth) in enumerate(zip(outputs_per_batch, self.truths, strict=True)):
            self._check(index, outputs)
            scores.append(self.item_scores([o[: len(truth)] for o in outputs], truth))
        values = np.concatenate(scores)
        value = float(values.mean())
        return Accuracy(
            self.metric, value, len(values), self.threshold, passed=value >= self.threshold
        )

    def _check(self, index: int, outputs: Sequence[np.ndarray]) -> None:
        """Outputs of the wrong count or shape would be scored against the wrong items."""
        got = [tuple(np.shape(output)) for output in outputs]
        want = [spec.shape for spec in self.outputs]
        if got != want:
            raise AsicperfError(
                f"task '{self.model}' batch {index}: outputs shaped {got}, expected {want} "
                f"({', '.join(spec.name for spec in self.outputs)})"
            )


def task_data(model: str, batch_size: int, fraction: float, threshold: float) -> TaskData | None:
    """`model`'s accuracy task over the leading `fraction` of its dataset at `batch_size` (None
    when it has no task dataset). MiniLM's truth is the FP32 reference embeddings, computed
    here once a process."""
    task = _TASKS.get(model)
    if task is None:
        return None
    batches, truths = zip(*dataset_batches(model, batch_size, fraction), strict=True)
    return TaskData(
        model=model,
        metric=task.metric,
        threshold=threshold,
        batch_size=batch_size,
        batches=batches,
        truths=truths,
        outputs=_output_specs(model, batch_size),
        item_scores=task.score,
    )
