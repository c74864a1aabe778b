"""A zoo task's accuracy as MLPerf computes it: from LoadGen's accuracy log, not from the
session directly.

LoadGen's accuracy run issues every sample of the QSL once and logs each response; here the
QSL is the task's batches (sample i = `task.batches[i]`), each response is that batch's
outputs (responses.py), and the metric is the task's own (`TaskData.score`) over the outputs
read back from mlperf_log_accuracy.json. So the figure is computed from what LoadGen logged,
as MLPerf's accuracy scripts do, and a result whose accuracy and performance runs were both
LoadGen's is the pair MLPerf would make. Reading the log also checks the path itself: a batch
LoadGen did not log, or a response of the wrong size, is an error rather than a silently
smaller sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ir.errors import AsicperfError
from runner.loadgen.accuracy_log import read_accuracy_log
from runner.loadgen.progress import Tick
from runner.loadgen.responses import ArraySpec
from runner.loadgen.run import run_loadgen
from runner.loadgen.settings import LoadgenSettings
from zoo.accuracy import Run
from zoo.task_data import Accuracy, TaskData


def accuracy_under_loadgen(
    task: TaskData,
    run: Run,
    settings: LoadgenSettings,
    log_dir: Path,
    *,
    tick: Tick = lambda fraction: None,
) -> Accuracy:
    """`task`'s metric with `run` serving LoadGen's accuracy run in `settings`' scenario, its
    logs in `log_dir`. `run` is called on LoadGen's issue thread, once per batch (MultiStream
    pads its one query with batches again)."""
    layout = response_layout(task)

    def run_batch(index: int) -> Sequence[np.ndarray]:
        outputs = run(task.batches[index])
        got = [ArraySpec.of(np.asarray(output)) for output in outputs]
        if got != layout:  # bytes of another layout would be read back as wrong numbers
            raise AsicperfError(
                f"task '{task.model}' batch {index}: outputs {_described(got)}, "
                f"expected {_described(layout)}"
            )
        return outputs

    loadgen = run_loadgen(
        settings,
        run_batch,
        batch_count=len(task.batches),
        batch_size=task.batch_size,
        log_dir=log_dir,
        accuracy=True,
        tick=tick,
    )
    return accuracy_from_log(task, loadgen.files.accuracy)


def accuracy_from_log(task: TaskData, path: Path) -> Accuracy:
    """`task`'s metric from a LoadGen accuracy log of its batches (`path`)."""
    logged = read_accuracy_log(path, response_layout(task))
    missing = [index for index in range(len(task.batches)) if index not in logged]
    if missing:
        raise AsicperfError(
            f"{path}: LoadGen logged no response for batch {', '.join(map(str, missing))} "
            f"of the {len(task.batches)} of task '{task.model}'"
        )
    return task.score([logged[index] for index in range(len(task.batches))])


def response_layout(task: TaskData) -> list[ArraySpec]:
    """The task's outputs as the response bytes of one batch lay them out."""
    return [ArraySpec(spec.dtype.name, spec.shape) for spec in task.outputs]


def _described(layout: Sequence[ArraySpec]) -> str:
    return ", ".join(f"{spec.dtype}{list(spec.shape)}" for spec in layout)
