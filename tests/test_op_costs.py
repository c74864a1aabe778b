"""FLOPs and bytes from the op semantics table, checked against arithmetic done by hand."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper
from onnx_ir.passes.common import ShapeInferencePass

from ir.ops import Cost, NodeShapes, OpSemantics, lookup, node_cost, registered_ops

FLOAT = TensorProto.FLOAT


def tensor(name: str, shape: Sequence[int | str] | None, dtype: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def build(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[str],
    *,
    opset: int = 23,
) -> oir.Model:
    """A hand-built model after ONNX shape inference, as the loader would hand it over."""
    untyped = [onnx.ValueInfoProto(name=name) for name in outputs]  # let inference type them
    graph = helper.make_graph(nodes, "g", inputs, untyped)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model = oir.serde.deserialize_model(proto)
    ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
    return model


def only_cost(model: oir.Model, bindings: dict[str, int] | None = None) -> Cost | None:
    (node,) = list(model.graph)
    return node_cost(node, bindings)


def flops_of(model: oir.Model) -> int:
    cost = only_cost(model)
    assert cost is not None
    return cost.flops


# ---- convolution --------------------------------------------------------------------------


def conv_model(x: list[int], w: list[int], *, bias: bool, **attributes: object) -> oir.Model:
    inputs = [tensor("x", x), tensor("w", w)]
    if bias:
        inputs.append(tensor("b", [w[0]]))
    node = helper.make_node("Conv", [i.name for i in inputs], ["y"], **attributes)
    return build([node], inputs, ["y"])


def test_conv_without_bias() -> None:
    model = conv_model([1, 3, 8, 8], [16, 3, 3, 3], bias=False, pads=[1, 1, 1, 1])
    # Y = [1, 16, 8, 8]; 2 * N * Cout * out_hw * Cin * kh * kw
    assert flops_of(model) == 2 * 1 * 16 * (8 * 8) * 3 * (3 * 3)  # 55296


def test_conv_with_bias() -> None:
    model = conv_model([1, 3, 8, 8], [16, 3, 3, 3], bias=True, pads=[1, 1, 1, 1])
    assert flops_of(model) == 2 * 1 * 16 * 64 * 3 * 9 + 1 * 16 * 64  # 55296 + 1024


def test_grouped_strided_padded_conv() -> None:
    model = conv_model(
        [2, 4, 9, 9], [6, 2, 3, 3], bias=True, group=2, strides=[2, 2], pads=[1, 1, 1, 1]
    )
    # out = floor((9 + 1 + 1 - 3) / 2) + 1 = 5 per axis; Cin/group = 2 (W's second dim)
    assert list(model.graph.outputs[0].shape) == [2, 6, 5, 5]
    assert flops_of(model) == 2 * 2 * 6 * 25 * 2 * 9 + 2 * 6 * 25  # 10800 + 300


def test_conv_output_shape_falls_back_to_attributes() -> None:
    model = conv_model([1, 3, 8, 8], [16, 3, 3, 3], bias=False, pads=[1, 1, 1, 1], strides=[2, 2])
    (node,) = list(model.graph)
    node.outputs[0].shape = None  # as if shape inference had not run
    assert node_cost(node) is None  # bytes need Y's shape
    entry = lookup("", "Conv")
    assert entry is not None
    # out = floor((8 + 2 - 3) / 2) + 1 = 4 per axis
    assert entry.flops(NodeShapes(node)) == 2 * 1 * 16 * (4 * 4) * 3 * 9


def test_depthwise_conv() -> None:
    model = conv_model([1, 8, 6, 6], [8, 1, 3, 3], bias=False, group=8)
    # out 4x4, one input channel per group
    assert flops_of(model) == 2 * 1 * 8 * 16 * 1 * 9


def test_conv_transpose() -> None:
    inputs = [tensor("x", [1, 4, 5, 5]), tensor("w", [4, 3, 3, 3]), tensor("b", [3])]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2])
    model = build([node], inputs, ["y"])
    # out = 2 * (5 - 1) + 3 = 11; each input element scatters Cout/group * kh * kw MACs
    assert list(model.graph.outputs[0].shape) == [1, 3, 11, 11]
    assert flops_of(model) == 2 * 1 * 4 * 25 * 3 * 9 + 1 * 3 * 121  # 5400 + 363


def test_grouped_conv_transpose_without_bias() -> None:
    inputs = [tensor("x", [1, 4, 5, 5]), tensor("w", [4, 2, 3, 3])]
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=2)
    model = build([node], inputs, ["y"])
    assert flops_of(model) == 2 * 1 * 4 * 25 * 2 * 9  # 3600


# ---- matmul and gemm ----------------------------------------------------------------------


def matmul_model(a: list[int | str], b: list[int | str]) -> oir.Model:
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    return build([node], [tensor("a", a), tensor("b", b)], ["y"])


def test_matmul_2d() -> None:
    assert flops_of(matmul_model([4, 5], [5, 6])) == 2 * 4 * 6 * 5  # 240


def test_matmul_batched_broadcast() -> None:
    # batch dims [3, 1] and [2] broadcast to [3, 2]
    assert flops_of(matmul_model([3, 1, 4, 5], [2, 5, 6])) == 2 * (3 * 2) * 4 * 6 * 5  # 1440


def test_matmul_vector() -> None:
    assert flops_of(matmul_model([5], [5, 6])) == 2 * 6 * 5


def test_gemm_trans_b_with_c() -> None:
    inputs = [tensor("a", [4, 5]), tensor("b", [6, 5]), tensor("c", [6])]
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)
    # M=4, N=6, K=5; + M*N for the C add; alpha and beta scaling are not counted
    assert flops_of(build([node], inputs, ["y"])) == 2 * 4 * 6 * 5 + 4 * 6  # 264


def test_gemm_trans_a_without_c() -> None:
    inputs = [tensor("a", [5, 4]), tensor("b", [5, 6])]
    node = helper.make_node("Gemm", ["a", "b"], ["y"], transA=1)
    assert flops_of(build([node], inputs, ["y"])) == 2 * 4 * 6 * 5


def test_matmul_integer_counts_ops() -> None:
    inputs = [tensor("a", [4, 5], TensorProto.UINT8), tensor("b", [5, 6], TensorProto.UINT8)]
    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    assert flops_of(build([node], inputs, ["y"])) == 2 * 4 * 6 * 5


def test_einsum_matches_matmul() -> None:
    inputs = [tensor("a", [3, 4, 5]), tensor("b", [3, 5, 6])]
    node = helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")
    assert flops_of(build([node], inputs, ["y"])) == 2 * 3 * 4 * 6 * 5


def test_small_mlp_total_is_the_hand_sum() -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("MatMul", ["h3", "w2"], ["h4"]),
        helper.make_node("Add", ["h4", "b2"], ["h5"]),
        helper.make_node("Softmax", ["h5"], ["y"], axis=-1),
    ]
    inputs = [
        tensor("x", [8, 16]),
        tensor("w1", [16, 32]),
        tensor("b1", [32]),
        tensor("w2", [32, 10]),
        tensor("b2", [10]),
    ]
    model = build(nodes, inputs, ["y"])
    costs = [node_cost(node) for node in model.graph]
    assert all(cost is not None for cost in costs)
    expected = (
        2 * 8 * 32 * 16  # MatMul 1: 8192
        + 8 * 32  # Add: 1 per element
        + 8 * 32  # Relu: 1 per element
        + 2 * 8 * 10 * 32  # MatMul 2: 5120
        + 8 * 10  # Add
        + 5 * 8 * 10  # Softmax: 5 per element
    )
    assert expected == 14304
    assert sum(cost.flops for cost in costs if cost is not None) == expected


@pytest.mark.parametrize(
    ("equation", "shapes", "expected"),
    [
        ("ij->ji", [[3, 4]], 0),  # a transpose: no arithmetic
        ("ii->", [[3, 3]], 3),  # trace: one add per diagonal point
        ("i,i", [[7], [7]], 2 * 7),  # implicit output: dot product
        ("...ij,...jk", [[2, 3, 4], [4, 5]], 2 * 2 * 3 * 5 * 4),  # batched matmul via ellipsis
        ("ij,ij->ij", [[3, 4], [3, 4]], 3 * 4),  # Hadamard product: multiplies only
    ],
)
def test_einsum_index_space(equation: str, shapes: list[list[int]], expected: int) -> None:
    inputs = [oir.Value(name=f"x{i}", shape=oir.Shape(shape)) for i, shape in enumerate(shapes)]
    node = oir.Node("", "Einsum", inputs, [oir.AttrString("equation", equation)])
    entry = lookup("", "Einsum")
    assert entry is not None
    assert entry.flops(NodeShapes(node)) == expected


def test_attention_4d_and_3d_agree() -> None:
    four_d = [tensor("q", [2, 4, 8, 16]), tensor("k", [2, 4, 10, 16]), tensor("v", [2, 4, 10, 16])]
    three_d = [tensor("q", [2, 8, 64]), tensor("k", [2, 10, 32]), tensor("v", [2, 10, 32])]
    scores = 2 * 4 * 8 * 10  # B * Hq * S * L
    # QK^T 2*D + PV 2*Dv + scale and softmax 6, per score
    expected = scores * (2 * 16 + 2 * 16 + 6)
    cost = single_op("Attention", four_d)
    assert cost is not None and cost.flops == expected
    cost = single_op("Attention", three_d, q_num_heads=4, kv_num_heads=2)
    assert cost is not None and cost.flops == expected


def test_lstm() -> None:
    inputs = [
        tensor("x", [5, 2, 3]),  # S=5, B=2, I=3
        tensor("w", [1, 16, 3]),  # 4 gates * H=4
        tensor("r", [1, 16, 4]),
        tensor("b", [1, 32]),
    ]
    cost = single_op("LSTM", inputs, hidden_size=4)
    per_step = 2 * 16 * (3 + 4) + 16 + 18 * 4 + 2 * 16  # projections, sum, cell, biases
    assert cost is not None and cost.flops == 5 * 2 * 1 * per_step  # 3440


def test_resize_linear_counts_taps() -> None:
    scales = helper.make_tensor("scales", FLOAT, [4], [1, 1, 2, 2])
    nodes = [
        helper.make_node("Constant", [], ["scales"], value=scales),
        helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear"),
    ]
    model = build(nodes, [tensor("x", [1, 1, 4, 4])], ["y"])
    cost = node_cost(list(model.graph)[1])
    # two resized axes -> 2 * 2 = 4 taps, one multiply-add each, per output element
    assert cost is not None and cost.flops == 2 * 4 * (8 * 8)


# ---- other families -----------------------------------------------------------------------


def single_op(
    op_type: str,
    inputs: list[onnx.ValueInfoProto],
    outputs: Sequence[str] = ("y",),
    **attributes: object,
) -> Cost | None:
    node = helper.make_node(op_type, [i.name for i in inputs], list(outputs), **attributes)
    return only_cost(build([node], inputs, list(outputs)))


def test_pooling_counts_window_elements() -> None:
    cost = single_op("MaxPool", [tensor("x", [1, 2, 6, 6])], kernel_shape=[2, 2], strides=[2, 2])
    assert cost is not None and cost.flops == (2 * 2) * (1 * 2 * 3 * 3)
    cost = single_op("GlobalAveragePool", [tensor("x", [1, 2, 6, 6])])
    assert cost is not None and cost.flops == 1 * 2 * 6 * 6


def test_reduction_counts_input_elements() -> None:
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Constant", [], ["axes"], value=axes),
        helper.make_node("ReduceMean", ["x", "axes"], ["y"]),
    ]
    model = build(nodes, [tensor("x", [3, 7])], ["y"])
    cost = node_cost(list(model.graph)[1])
    assert cost is not None and cost.flops == 3 * 7


def test_layer_norm_and_gelu_per_element() -> None:
    x = tensor("x", [2, 8])
    cost = single_op("LayerNormalization", [x, tensor("s", [8]), tensor("b", [8])])
    assert cost is not None and cost.flops == 8 * 2 * 8
    cost = single_op("Gelu", [x], approximate="tanh")
    assert cost is not None and cost.flops == 9 * 2 * 8


def test_cast_is_free_but_moves_bytes() -> None:
    cost = single_op("Cast", [tensor("x", [10])], to=TensorProto.FLOAT16)
    assert cost == Cost(flops=0, bytes_moved=10 * 4 + 10 * 2)


# ---- bytes --------------------------------------------------------------------------------


def test_matmul_bytes_float32() -> None:
    cost = only_cost(matmul_model([4, 5], [5, 6]))
    # read A (20) and B (30), write Y (24), 4 bytes each
    assert cost == Cost(flops=240, bytes_moved=(20 + 30 + 24) * 4)


def test_reshape_moves_nothing() -> None:
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [6, 4])
    nodes = [
        helper.make_node("Constant", [], ["shape"], value=shape),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    model = build(nodes, [tensor("x", [4, 6])], ["y"])
    assert [node_cost(node) for node in model.graph] == [Cost(0, 0), Cost(0, 0)]


def test_gather_reads_indices_and_gathered_rows() -> None:
    inputs = [tensor("table", [1000, 16]), tensor("ids", [2, 3], TensorProto.INT64)]
    cost = single_op("Gather", inputs)
    # indices 6 * 8 bytes; 6 rows of 16 floats read and written
    assert cost == Cost(flops=0, bytes_moved=6 * 8 + 2 * (6 * 16 * 4))


def test_bytes_round_up_sub_byte_types() -> None:
    cost = single_op("Identity", [tensor("x", [3], TensorProto.INT4)])
    assert cost == Cost(0, 0)
    cost = single_op("Neg", [tensor("x", [3], TensorProto.INT8)])
    assert cost == Cost(flops=3, bytes_moved=3 + 3)


# ---- unknown shapes and bindings ----------------------------------------------------------


def test_symbolic_batch_needs_bindings() -> None:
    model = matmul_model(["batch", 5], [5, 6])
    assert only_cost(model) is None
    assert only_cost(model, {"batch": 4}) == Cost(
        flops=2 * 4 * 6 * 5, bytes_moved=(20 + 30 + 24) * 4
    )


def test_shape_op_needs_no_shapes() -> None:
    cost = single_op("Shape", [tensor("x", ["batch", 5])])
    assert cost == Cost(0, 0)


def test_unknown_op_and_control_flow_have_no_cost() -> None:
    node = oir.Node("custom.domain", "Frobnicate", [])
    assert node_cost(node) is None
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["bx"])], "b", [], [tensor("bx", [1])]
    )
    model = build(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
        [tensor("c", [], TensorProto.BOOL), tensor("x", [1])],
        ["y"],
    )
    assert node_cost(next(iter(model.graph))) is None


def test_cost_to_json_and_sum() -> None:
    total = Cost(2, 3) + Cost(5, 7)
    assert total.to_json() == {"flops": 7, "bytes_moved": 10}


# ---- coverage ------------------------------------------------------------------------------

REQUIRED_OPS = (  # noqa: SIM905 (a word list reads better than a column of strings)
    "Conv ConvTranspose MatMul Gemm BatchNormalization LayerNormalization Softmax Relu Gelu"
    " Sigmoid Tanh Erf Add Sub Mul Div Pow Sqrt Reshape Transpose Concat Split Slice Gather"
    " MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool ReduceMean ReduceSum ReduceMax"
    " ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceSumSquare Cast"
    " QuantizeLinear DequantizeLinear DynamicQuantizeLinear MatMulInteger ConvInteger"
    " QLinearMatMul QLinearConv Einsum ConstantOfShape Sum LRN Dropout Flatten Constant Shape Size"
    " Unsqueeze Squeeze Expand Where Equal Clip LeakyRelu Exp Log Neg Abs Max Min Mean Pad Resize"
    " Upsample Tile InstanceNormalization GroupNormalization PRelu Selu Elu Softplus HardSigmoid"
    " HardSwish LogSoftmax ArgMax TopK CumSum Identity"
).split()
MICROSOFT_OPS = ("Gelu", "FastGelu", "BiasGelu", "QuickGelu", "FusedMatMul")
CATEGORIES = {
    "matmul",
    "conv",
    "attention",
    "recurrent",
    "elementwise",
    "activation",
    "normalization",
    "pooling",
    "reduction",
    "data-movement",
    "quantization",
    "control",
}


@pytest.mark.parametrize("op_type", REQUIRED_OPS)
def test_required_op_has_an_entry(op_type: str) -> None:
    entry = lookup("", op_type)
    assert isinstance(entry, OpSemantics)
    assert lookup("ai.onnx", op_type) is entry


@pytest.mark.parametrize("op_type", MICROSOFT_OPS)
def test_microsoft_op_has_an_entry(op_type: str) -> None:
    entry = lookup("com.microsoft", op_type)
    assert entry is not None and entry.infer_output_shapes is not None


def test_registry_is_consistent() -> None:
    entries = registered_ops()
    keys = [(entry.domain, entry.op_type) for entry in entries]
    assert len(keys) == len(set(keys))
    assert keys == sorted(keys)
    assert {entry.category for entry in entries} <= CATEGORIES
    assert all(entry.formula for entry in entries)


BACKEND_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def _op_types(graph: onnx.GraphProto) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for node in graph.node:
        found.add((node.domain, node.op_type))
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.HasField("g") else []
            for subgraph in [*subgraphs, *attribute.graphs]:
                found |= _op_types(subgraph)
    return found


@pytest.mark.parametrize("folder", ["light", "simple", "pytorch-converted", "pytorch-operator"])
def test_every_backend_test_model_op_has_an_entry(folder: str) -> None:
    root = BACKEND_DATA / folder
    if not root.is_dir():
        pytest.skip(f"onnx wheel ships no {folder} test models")
    seen: set[tuple[str, str]] = set()
    for path in sorted(root.rglob("*.onnx")):
        seen |= _op_types(onnx.load(path, load_external_data=False).graph)
    missing = sorted(
        f"{domain or 'ai.onnx'}::{op}" for domain, op in seen if not lookup(domain, op)
    )
    assert seen and not missing
