"""Tiny models for bench tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save_gemm_relu(path: Path) -> Path:
    """x[batch, 4] -> Gemm -> Relu -> y[batch, 3]: a Gemm+Relu pair that fuse-activation fuses
    into com.microsoft FusedGemm for onnxruntime, and a Gemm that fake_targets.PartialTarget
    cannot run (it falls back)."""
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w"], ["g"], transB=1),
            helper.make_node("Relu", ["g"], ["y"]),
        ],
        "gemm_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor("w", TensorProto.FLOAT, (3, 4), [1.0] * 12)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, path)
    return path


def save_matmul(path: Path, rows: int, w: np.ndarray) -> Path:
    """x[rows, K] @ w[K, N] -> y[rows, N], w a constant."""
    k, n = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
