"""The vision zoo builders (ResNet-50, ViT-B/16): small builds load, verify and run with sane
logits, builds are byte-identical, and full builds have the reference models' parameter count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from ir.model_io import load_model
from ir.reference import run_reference
from ir.verifier import verify
from zoo.catalog import ZOO

# torchvision's resnet50() and vit_b_16() parameter counts (BN running stats are buffers).
FULL_PARAMETERS = {"resnet50": 25_557_032, "vit-b16": 86_567_656}


def _parameter_count(model: onnx.ModelProto) -> int:
    """Elements of float tensor initializers, leaving out BN running mean/var (buffers) and
    scalar constants (eps, sqrt(2), ...), which are not trained parameters."""
    buffers = {
        node.input[index]
        for node in model.graph.node
        if node.op_type == "BatchNormalization"
        for index in (3, 4)
    }
    return sum(
        int(np.prod(tensor.dims))
        for tensor in model.graph.initializer
        if tensor.data_type == onnx.TensorProto.FLOAT and tensor.dims and tensor.name not in buffers
    )


@pytest.mark.parametrize("name", sorted(FULL_PARAMETERS))
def test_small_build_loads_verifies_and_runs(name: str, tmp_path: Path) -> None:
    entry = ZOO[name]
    assert entry.builder is not None
    path = tmp_path / f"{name}.onnx"
    onnx.save(entry.builder(**entry.test_options), path)
    model = load_model(path)
    assert verify(model) == []
    image = entry.test_options["image"]
    pixels = np.random.default_rng(0).standard_normal((2, 3, image, image)).astype(np.float32)
    (logits,) = run_reference(model, {"pixel_values": pixels})
    assert logits.shape == (2, entry.test_options["classes"])
    assert np.isfinite(logits).all()
    assert 1e-3 < logits.std() < 1e3  # activations neither exploded nor vanished


@pytest.mark.parametrize("name", sorted(FULL_PARAMETERS))
def test_builds_are_deterministic(name: str) -> None:
    entry = ZOO[name]
    assert entry.builder is not None
    first = entry.builder(**entry.test_options).SerializeToString()
    assert first == entry.builder(**entry.test_options).SerializeToString()


@pytest.mark.parametrize("name", sorted(FULL_PARAMETERS))
def test_full_build_has_reference_parameter_count(name: str) -> None:
    entry = ZOO[name]
    assert entry.builder is not None
    assert _parameter_count(entry.builder(**entry.options)) == FULL_PARAMETERS[name]
