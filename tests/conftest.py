"""Shared fixtures: a small model with real weights, as a proto to edit and as a file to load;
a one-node model with a batch dimension, for benchmark runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import settings
from onnx import TensorProto, helper, numpy_helper

# CI replays the same examples every run (a failure there is reproducible); local runs keep
# exploring new random inputs.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def _small_model() -> onnx.ModelProto:
    """x[1,3,8,8] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y[1,32].

    The pooling makes the output shape independent of Conv strides, so tests can change them and
    still have a valid model. The two weight tensors exceed onnx_ir's 256-byte external-data
    threshold, the biases do not, so an external-data save splits the weights both ways.
    """
    rng = np.random.default_rng(0)
    weights = {
        "conv_w": rng.standard_normal((8, 3, 3, 3), dtype=np.float32),
        "conv_b": rng.standard_normal(8, dtype=np.float32),
        "gemm_w": rng.standard_normal((32, 8), dtype=np.float32),
        "gemm_b": rng.standard_normal(32, dtype=np.float32),
    }
    nodes = [
        helper.make_node(
            "Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv", strides=[1, 1], pads=[1] * 4
        ),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node(
            "Gemm", ["f", "gemm_w", "gemm_b"], ["y"], name="gemm", alpha=1.0, transB=1
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture
def small_model_proto() -> onnx.ModelProto:
    """A fresh copy of the small Conv/Gemm model, free to edit."""
    return _small_model()


@pytest.fixture
def small_model_path(tmp_path: Path) -> Path:
    """The small Conv/Gemm model saved (weights embedded) in the test's own folder."""
    path = tmp_path / "small" / "small.onnx"
    path.parent.mkdir()
    onnx.save(_small_model(), path)
    return path


@pytest.fixture
def relu_path(tmp_path: Path) -> Path:
    """x[batch, 4] -> Relu -> y: a batch dimension to bind, and next to no compute."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
