"""INT8 post-training quantization on a CNN trained on scikit-learn's digits: calibrated on
training images, scored on the held-out ones, it keeps FP32's top-1 accuracy within a point;
sensitivity ranks every quantized layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the digits come from scikit-learn")

from ir.model_io import load_model
from ir.reference import reference_session
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline
from passes.sensitivity import DriftBudget, DriftProbe, layer_sensitivity
from zoo.accuracy import task_accuracy
from zoo.cache import model_file
from zoo.catalog import ZOO
from zoo.datasets.digits import split


def _top1(model) -> float:
    session = reference_session(model)

    def run(feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return session.run(None, dict(feeds))

    accuracy = task_accuracy("digits-cnn", run, batch_size=32, fraction=1.0, threshold=0.0)
    assert accuracy is not None
    return accuracy.value


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    train_images, _, _, _ = split()
    path = tmp_path_factory.mktemp("calibration") / "digits.npz"
    np.savez(path, pixels=train_images[:128])
    return path


@pytest.mark.parametrize("observer", ["minmax", "percentile", "entropy"])
def test_int8_top1_within_one_point_of_fp32(calibration: Path, observer: str) -> None:
    fp32 = load_model(model_file(ZOO["digits-cnn"]))
    int8 = load_model(model_file(ZOO["digits-cnn"]))
    spec = f"cleanup,quantize-int8{{observer={observer} calibration={calibration}}}"
    result = run_pipeline(int8, parse_pipeline(spec))
    quantize = next(r for r in result.records if r.pass_name == "quantize-int8")
    assert quantize.rule_counts()["weight"] == 3  # two convolutions and the classifier
    assert _top1(result.model) >= _top1(fp32) - 0.01


def test_sensitivity_ranks_every_quantized_layer(calibration: Path) -> None:
    model = load_model(model_file(ZOO["digits-cnn"]))
    passes = parse_pipeline(f"quantize-int8{{calibration={calibration}}}")
    images = split()[2][:64]
    probe = DriftProbe(model)
    probe.feeds = {"pixels": images}
    probe.reference = reference_session(model).run(None, probe.feeds)
    ranking = layer_sensitivity(model, passes, probe, DriftBudget("top1-agreement", 0.0))
    assert sorted(layer.op_type for layer in ranking) == ["Conv", "Conv", "Gemm"]
    agreements = [DriftBudget("top1-agreement", 0).measure(list(r.drifts)) for r in ranking]
    assert agreements == sorted(agreements) and min(agreements) >= 0.95
