"""Tiny float models that several targets' tests compile: an MLP and ResNet-50's shape in
miniature, built as ONNX protos so each test loads them through the toolkit's loader."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def onnx_model(
    nodes: list[onnx.NodeProto],
    inputs: Mapping[str, tuple[int, list[int | str]]],
    outputs: list[str],
    weights: Mapping[str, np.ndarray],
    opset: int = 17,
    *,
    domains: Mapping[str, int] | None = None,
    output_type: int = TensorProto.UNDEFINED,
    ir_version: int = 8,
) -> onnx.ModelProto:
    """`inputs` maps each graph input to its element type and shape; `domains`: opsets of other
    domains the nodes use (com.microsoft's fused ops)."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(name, output_type, None) for name in outputs],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(domain, version) for domain, version in (domains or {}).items()]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)


def mlp(seed: int = 0) -> onnx.ModelProto:
    """x[batch, 32] -> MatMul+Add -> Relu -> MatMul+Add -> Softmax -> y[batch, 10]."""
    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.standard_normal((32, 64), dtype=np.float32) * 0.2,
        "b1": rng.standard_normal(64, dtype=np.float32),
        "w2": rng.standard_normal((64, 10), dtype=np.float32) * 0.2,
        "b2": rng.standard_normal(10, dtype=np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"]),
        helper.make_node("Add", ["h2", "b2"], ["a2"]),
        helper.make_node("Softmax", ["a2"], ["y"], axis=-1),
    ]
    return onnx_model(nodes, {"x": (TensorProto.FLOAT, ["batch", 32])}, ["y"], weights)


def small_resnet() -> onnx.ModelProto:
    """ResNet-50's shape in miniature: a Conv+BN+Relu stem, MaxPool, one residual block (two
    Conv+BN, Add, Relu), GlobalAveragePool, Gemm, Softmax."""
    rng = np.random.default_rng(1)
    weights: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []

    def conv_bn(source: str, channels_in: int, channels_out: int, name: str) -> str:
        fan_in = 9 * channels_in
        shape = (channels_out, channels_in, 3, 3)
        weights[f"{name}_w"] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        weights[f"{name}_scale"] = rng.uniform(0.5, 1.5, channels_out).astype(np.float32)
        weights[f"{name}_bias"] = rng.standard_normal(channels_out, dtype=np.float32) * 0.1
        weights[f"{name}_mean"] = rng.standard_normal(channels_out, dtype=np.float32) * 0.1
        weights[f"{name}_var"] = rng.uniform(0.5, 1.5, channels_out).astype(np.float32)
        nodes.append(helper.make_node("Conv", [source, f"{name}_w"], [name], pads=[1] * 4))
        stats = [f"{name}_{p}" for p in ("scale", "bias", "mean", "var")]
        nodes.append(helper.make_node("BatchNormalization", [name, *stats], [f"{name}_bn"]))
        return f"{name}_bn"

    def relu(source: str) -> str:
        nodes.append(helper.make_node("Relu", [source], [f"{source}_relu"]))
        return f"{source}_relu"

    stem = relu(conv_bn("x", 3, 16, "stem"))
    nodes.append(
        helper.make_node(
            "MaxPool", [stem], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
        )
    )
    branch = conv_bn(relu(conv_bn("pool", 16, 16, "block_a")), 16, 16, "block_b")
    nodes.append(helper.make_node("Add", [branch, "pool"], ["residual"]))
    nodes.append(helper.make_node("GlobalAveragePool", [relu("residual")], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    weights["fc_w"] = rng.standard_normal((10, 16), dtype=np.float32) * 0.3
    weights["fc_b"] = rng.standard_normal(10, dtype=np.float32) * 0.1
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))
    return onnx_model(nodes, {"x": (TensorProto.FLOAT, [1, 3, 32, 32])}, ["probs"], weights)
