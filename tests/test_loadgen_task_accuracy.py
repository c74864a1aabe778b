"""A task's accuracy through LoadGen's accuracy run: the digits top-1 computed from
mlperf_log_accuracy.json equals the one computed from the session directly, a fake of known
answers gives its exact top-1, and a log that misses a batch or a session that answers in
another layout is one line."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ir.errors import AsicperfError
from runner.loadgen.settings import LoadgenSettings
from runner.loadgen.task_accuracy import accuracy_from_log, accuracy_under_loadgen
from zoo.accuracy import task_accuracy
from zoo.cache import model_file
from zoo.catalog import ZOO
from zoo.task_data import TaskData, task_data

FRACTION = 0.2  # the leading 72 of the 360 held-out digits


@pytest.fixture(scope="module")
def digits() -> TaskData:
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn")
    data = task_data("digits-cnn", batch_size=32, fraction=FRACTION, threshold=0.95)
    assert data is not None and data.items == (32, 32, 8)  # the last batch padded
    return data


@pytest.mark.parametrize("scenario", ["single-stream", "multi-stream", "offline"])
def test_digits_top1_from_loadgens_log_is_the_sessions_exactly(
    scenario: str, digits: TaskData, tmp_path: Path
) -> None:
    session = ort.InferenceSession(
        str(model_file(ZOO["digits-cnn"])), providers=["CPUExecutionProvider"]
    )

    def run(feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return session.run(None, dict(feeds))

    settings = LoadgenSettings(scenario=scenario, min_duration_s=10.0, min_queries=64)
    through_loadgen = accuracy_under_loadgen(digits, run, settings, tmp_path)
    direct = task_accuracy("digits-cnn", run, batch_size=32, fraction=FRACTION, threshold=0.95)
    assert through_loadgen == direct
    assert (through_loadgen.metric, through_loadgen.samples) == ("top-1", 72)
    logged = json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())
    assert {entry["qsl_idx"] for entry in logged} == {0, 1, 2}  # the figure came from here


class KnownAnswers:
    """Logits naming each digit's true label, except for every 3, which it calls an 8: its
    top-1 is exactly the share of the items that are not a 3."""

    def __init__(self) -> None:
        from zoo.datasets.digits import test_split

        images, labels = test_split()
        self.label_of = {
            image.tobytes(): int(label) for image, label in zip(images, labels, strict=True)
        }

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        labels = [self.label_of[image.tobytes()] for image in feeds["pixels"]]
        answers = [8 if label == 3 else label for label in labels]
        return [np.eye(10, dtype=np.float32)[answers]]


def test_a_fake_of_known_answers_scores_its_exact_top1(digits: TaskData, tmp_path: Path) -> None:
    from zoo.datasets.digits import test_split

    server = LoadgenSettings(
        scenario="server",
        min_duration_s=10.0,
        min_queries=64,
        server_qps=640.0,
        latency_bound_ms=100.0,
    )
    accuracy = accuracy_under_loadgen(digits, KnownAnswers(), server, tmp_path)
    labels = test_split()[1][:72]
    assert 0 < (labels == 3).sum() < 72
    assert accuracy.value == float((labels != 3).mean())
    assert (accuracy.samples, accuracy.threshold) == (72, 0.95)


def test_a_log_missing_a_batch_is_one_line_naming_it(digits: TaskData, tmp_path: Path) -> None:
    logits = np.zeros((32, 10), dtype=np.float32).tobytes().hex()
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": logits}]))
    with pytest.raises(AsicperfError) as raised:
        accuracy_from_log(digits, path)
    expected = f"{path}: LoadGen logged no response for batch 1, 2 of the 3 of task 'digits-cnn'"
    assert str(raised.value) == expected


def test_outputs_in_another_layout_fail_the_run_naming_the_batch(
    digits: TaskData, tmp_path: Path
) -> None:
    def float64_logits(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [np.zeros((32, 10), dtype=np.float64)]

    settings = LoadgenSettings(scenario="single-stream", min_duration_s=10.0, min_queries=64)
    with pytest.raises(AsicperfError) as raised:
        accuracy_under_loadgen(digits, float64_logits, settings, tmp_path)
    expected = (
        r"batch (\d) under LoadGen failed: AsicperfError: task 'digits-cnn' batch \1: "
        r"outputs float64\[32, 10\], expected float32\[32, 10\]"
    )
    assert re.fullmatch(expected, str(raised.value))
