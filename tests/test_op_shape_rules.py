"""Shape rules for ops ONNX cannot infer: infer_missing_shapes fills them, costs then follow."""

from __future__ import annotations

from collections.abc import Sequence

import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper
from onnx_ir.passes.common import ShapeInferencePass

from ir.ops import infer_missing_shapes, node_cost
from ir.ops.shapes import window_output_spatial

FLOAT = TensorProto.FLOAT
MS = "com.microsoft"


def tensor(name: str, shape: Sequence[int | str] | None, dtype: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def build(
    nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[str]
) -> oir.Model:
    """A hand-built model after ONNX shape inference (which skips com.microsoft ops)."""
    untyped = [onnx.ValueInfoProto(name=name) for name in outputs]
    graph = helper.make_graph(nodes, "g", inputs, untyped)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)]
    model = oir.serde.deserialize_model(helper.make_model(graph, opset_imports=opsets))
    ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
    return model


def shape_of(value: oir.Value) -> list[int | str | None]:
    assert value.shape is not None
    return [dim if isinstance(dim, int) else dim.value for dim in value.shape.dims]


def test_fused_matmul_add_gelu_chain_is_filled_in_order() -> None:
    nodes = [
        helper.make_node("FusedMatMul", ["a", "b"], ["mm"], domain=MS, transA=1, transB=1),
        helper.make_node("Add", ["mm", "bias"], ["biased"]),
        helper.make_node("Gelu", ["biased"], ["y"], domain=MS),
    ]
    # A^T: [batch, 4, 5]; B^T: [5, 6]
    inputs = [tensor("a", ["batch", 5, 4]), tensor("b", [6, 5]), tensor("bias", [6])]
    model = build(nodes, inputs, ["y"])
    fused, add, gelu = model.graph
    assert fused.outputs[0].shape is None  # ONNX could not infer it

    assert infer_missing_shapes(model) == 3
    for node in (fused, add, gelu):
        assert node.outputs[0].dtype == oir.DataType.FLOAT
        assert shape_of(node.outputs[0]) == ["batch", 4, 6]
    assert infer_missing_shapes(model) == 0  # nothing left, nothing overwritten

    assert node_cost(fused) is None  # symbolic batch
    cost = node_cost(fused, {"batch": 2})
    assert cost is not None and cost.flops == 2 * 2 * 4 * 6 * 5  # 2 * batch * M * N * K
    gelu_cost = node_cost(gelu, {"batch": 2})
    assert gelu_cost is not None and gelu_cost.flops == 5 * 2 * 4 * 6


def test_fused_matmul_broadcasts_batch_dims() -> None:
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain=MS, alpha=0.5)
    model = build([node], [tensor("a", [3, 1, 4, 5]), tensor("b", [2, 5, 6])], ["y"])
    assert infer_missing_shapes(model) == 1
    (fused,) = model.graph
    assert shape_of(fused.outputs[0]) == [3, 2, 4, 6]
    cost = node_cost(fused)
    assert cost is not None and cost.flops == 2 * (3 * 2) * 4 * 6 * 5


def test_fused_matmul_with_batch_transpose_stays_unknown() -> None:
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain=MS, transBatchA=1)
    model = build([node], [tensor("a", [2, 4, 5]), tensor("b", [5, 6])], ["y"])
    infer_missing_shapes(model)
    (fused,) = model.graph
    assert fused.outputs[0].dtype == oir.DataType.FLOAT
    assert fused.outputs[0].shape is None
    assert node_cost(fused) is None


@pytest.mark.parametrize(
    ("op_type", "extra_inputs", "flops_per_element"),
    [
        ("Gelu", [], 5),
        ("FastGelu", [], 9),
        ("FastGelu", [tensor("bias", [8])], 10),
        ("BiasGelu", [tensor("bias", [8])], 6),
        ("QuickGelu", [], 6),
    ],
)
def test_gelu_family_keeps_input_type_and_shape(
    op_type: str, extra_inputs: list[onnx.ValueInfoProto], flops_per_element: int
) -> None:
    inputs = [tensor("x", ["batch", 3, 8], TensorProto.FLOAT16), *extra_inputs]
    node = helper.make_node(op_type, [i.name for i in inputs], ["y"], domain=MS)
    model = build([node], inputs, ["y"])
    assert infer_missing_shapes(model) == 1
    (gelu,) = model.graph
    assert gelu.outputs[0].dtype == oir.DataType.FLOAT16
    assert shape_of(gelu.outputs[0]) == ["batch", 3, 8]
    cost = node_cost(gelu, {"batch": 2})
    assert cost is not None and cost.flops == flops_per_element * 2 * 3 * 8


def test_fused_conv_shape_and_cost() -> None:
    node = helper.make_node(
        "FusedConv",
        ["x", "w"],
        ["y"],
        domain=MS,
        activation="Relu",
        pads=[1, 1, 1, 1],
        strides=[2, 2],
    )
    model = build([node], [tensor("x", [1, 3, 8, 8]), tensor("w", [16, 3, 3, 3])], ["y"])
    assert infer_missing_shapes(model) == 1
    (conv,) = model.graph
    assert shape_of(conv.outputs[0]) == [1, 16, 4, 4]
    cost = node_cost(conv)
    # Conv (2 * N * Cout * out_hw * Cin * kh * kw) + Relu (1 per output element)
    assert cost is not None and cost.flops == 2 * 16 * 16 * 3 * 9 + 16 * 16


def test_subgraph_nodes_are_filled() -> None:
    branch = helper.make_graph(
        [helper.make_node("Gelu", ["x"], ["gx"], domain=MS)], "branch", [], [tensor("gx", None)]
    )
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    model = build([node], [tensor("c", [], TensorProto.BOOL), tensor("x", [2, 3])], ["y"])
    infer_missing_shapes(model)
    (if_node,) = model.graph
    then_graph = if_node.attributes["then_branch"].as_graph()
    (gelu,) = then_graph
    assert shape_of(gelu.outputs[0]) == [2, 3]


@pytest.mark.parametrize(
    "attributes",
    [
        {"kernel_shape": [3, 3]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [2, 3], "strides": [2, 1], "dilations": [2, 1]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"},
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    ],
)
def test_window_output_matches_onnx_inference(attributes: dict[str, object]) -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], **attributes)
    model = build([node], [tensor("x", [1, 2, 10, 9])], ["y"])
    (pool,) = model.graph
    kernel = attributes["kernel_shape"]
    assert isinstance(kernel, list)
    assert window_output_spatial(pool, [10, 9], kernel) == shape_of(pool.outputs[0])[2:]
