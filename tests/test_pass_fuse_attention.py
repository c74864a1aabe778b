"""fuse-attention: scaled dot-product attention becomes com.microsoft MultiHeadAttention, with the
head split and merge absorbed or converted; every skip says why."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from bert_like import assert_close, bert_like_feeds, build_bert_like, load, make_model, outputs_of
from onnx import TensorProto, helper

from ir.node_ids import node_id, provenance
from ir.verifier import verify
from passes.audit import ChangeKind
from passes.fusion.fuse_attention import FuseAttention, FuseAttentionConfig
from passes.instruments import VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline

# batch 2, heads 2, 4 queries, 6 keys, head size 8 (hidden 16): cross-attention, so the query
# and key lengths cannot be confused.
Q4, K4, KT4 = [2, 2, 4, 8], [2, 2, 6, 8], [2, 2, 8, 6]
CONSTANTS = {
    "scale": np.array(0.35, np.float32),
    "root": np.array(math.sqrt(8), np.float32),
    "split": np.array([0, 0, 2, 8]),
    "merge": np.array([0, 0, 16]),
}


def _node(op: str, inputs: list[str], output: str, **attributes: object) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], name=output, **attributes)


def _core(softmax_axis: int | None = -1) -> list[onnx.NodeProto]:
    """Softmax(q @ Transpose(k) * scale + mask) @ v on 4-D inputs."""
    axis = {} if softmax_axis is None else {"axis": softmax_axis}
    return [
        _node("Transpose", ["k"], "kt", perm=[0, 1, 3, 2]),
        _node("MatMul", ["q", "kt"], "s"),
        _node("Mul", ["s", "scale"], "ss"),
        _node("Add", ["ss", "mask"], "a"),
        _node("Softmax", ["a"], "p", **axis),
        _node("MatMul", ["p", "v"], "y"),
    ]


def _split(name: str, perm: list[int]) -> list[onnx.NodeProto]:
    return [
        _node("Reshape", [name, "split"], f"{name}_r"),
        _node("Transpose", [f"{name}_r"], f"{name}4", perm=perm),
    ]


def _bsd_attention() -> list[onnx.NodeProto]:
    """[B, S, hidden] in and out: head splits with constant shapes, K^T in one Transpose, Div
    scale, no mask, head merge."""
    return [
        *_split("q", [0, 2, 1, 3]),
        *_split("k", [0, 2, 3, 1]),
        *_split("v", [0, 2, 1, 3]),
        _node("MatMul", ["q4", "k4"], "s"),
        _node("Div", ["s", "root"], "ss"),
        _node("Softmax", ["ss"], "p", axis=3),
        _node("MatMul", ["p", "v4"], "c"),
        _node("Transpose", ["c"], "ct", perm=[0, 2, 1, 3]),
        _node("Reshape", ["ct", "merge"], "y"),
    ]


CORE_INPUTS = {"q": Q4, "k": K4, "v": K4, "mask": [2, 1, 1, 6]}
BSD_INPUTS = {"q": [2, 4, 16], "k": [2, 6, 16], "v": [2, 6, 16]}


def _model(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list[int | str]] = CORE_INPUTS,
    outputs: tuple[str, ...] = ("y",),
    opset: int = 14,
    elem_type: int = TensorProto.FLOAT,
) -> ir.Model:
    return load(make_model(nodes, inputs, outputs, CONSTANTS, opset, elem_type), tmp_path)


def _ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def _attention(model: ir.Model) -> ir.Node:
    (node,) = [node for node in model.graph if node.op_type == "MultiHeadAttention"]
    return node


def _fuse_and_check(model: ir.Model, expected_ops: list[str]) -> ir.Node:
    """Fuse, check the op list, the audit and provenance, validity and numerics; the fused op."""
    before_ids = {node_id(node) for node in model.graph}
    before = outputs_of(model)
    result = FuseAttention()(model)
    assert _ops(model) == expected_ops
    attention = _attention(model)
    assert attention.domain == "com.microsoft"
    assert model.opset_imports["com.microsoft"] == 1
    removed = {c.nodes[0] for c in result.changes if c.kind == ChangeKind.REMOVED_NODE}
    assert removed == before_ids - {node_id(node) for node in model.graph}
    assert set(provenance(attention)["replaces"]) == removed
    added = [c for c in result.changes if c.kind == ChangeKind.ADDED_NODE]
    assert {c.nodes[0] for c in added} == {node_id(n) for n in model.graph} - before_ids
    assert all(c.rule == "attention" and set(c.replaces) == removed for c in added)
    assert result.skipped == ()
    assert model.graph.outputs[0].name == "y"
    assert verify(model) == []
    assert_close(before, outputs_of(model))
    return attention


def test_core_on_4d_inputs(tmp_path: Path) -> None:
    """Q is transposed and reshaped in, K and V go in as [B, N, T, H], the one-row mask is
    expanded over the 4 queries, the output is reshaped and transposed back."""
    model = _model(tmp_path, _core())
    attention = _fuse_and_check(
        model,
        [
            "Transpose",
            "Constant",
            "Reshape",
            "Constant",
            "Expand",
            "MultiHeadAttention",
            "Constant",
            "Reshape",
            "Transpose",
        ],
    )
    assert [value.name for value in attention.inputs[1:3]] == ["k", "v"]
    assert attention.attributes.get_int("num_heads") == 2
    assert attention.attributes.get_float("scale") == pytest.approx(0.35)


def test_head_split_and_merge_absorbed(tmp_path: Path) -> None:
    model = _model(tmp_path, _bsd_attention(), BSD_INPUTS)
    attention = _fuse_and_check(model, ["MultiHeadAttention"])
    assert [value.name for value in attention.inputs] == ["q", "k", "v"]
    assert attention.attributes.get_float("scale") == pytest.approx(1 / math.sqrt(8))


def test_shared_shape_computation_stays(tmp_path: Path) -> None:
    """One computed split shape for Q, K and V serves no single Reshape alone: it stays."""
    shape = [
        _node("Shape", ["q"], "q_shape"),
        _node("Gather", ["q_shape", "leading"], "lead"),
        _node("Concat", ["lead", "heads"], "shared", axis=0),
    ]
    nodes = [*shape, *_bsd_attention()]
    for node in nodes:
        if node.op_type == "Reshape" and node.input[1] == "split":
            node.input[1] = "shared"
    inputs = {"q": [2, 4, 16], "k": [2, 4, 16], "v": [2, 4, 16]}
    constants = {**CONSTANTS, "leading": np.array([0, 1]), "heads": np.array([2, 8])}
    model = load(make_model(nodes, inputs, ["y"], constants), tmp_path)
    _fuse_and_check(model, ["Shape", "Gather", "Concat", "MultiHeadAttention"])


def test_key_without_split_keeps_value_split(tmp_path: Path) -> None:
    """K^T comes in as is: K and V must share a layout, so both go in as [B, N, T, H] and V's
    head split stays; the full [1, N, S, T] mask goes in unexpanded; no scale is scale 1."""
    nodes = [
        *_split("v", [0, 2, 1, 3]),
        *_split("q", [0, 2, 1, 3]),
        _node("MatMul", ["q4", "kt"], "s"),
        _node("Add", ["mask", "s"], "a"),
        _node("Softmax", ["a"], "p"),
        _node("MatMul", ["p", "v4"], "y"),
    ]
    inputs = {"q": [2, 4, 16], "kt": KT4, "v": [2, 6, 16], "mask": [1, 2, 4, 6]}
    model = _model(tmp_path, nodes, inputs)
    attention = _fuse_and_check(
        model,
        [
            "Reshape",
            "Transpose",
            "Transpose",
            "MultiHeadAttention",
            "Constant",
            "Reshape",
            "Transpose",
        ],
    )
    assert [value.name for value in attention.inputs if value is not None] == [
        "q",
        model.graph.node(2).outputs[0].name,
        "v4",
        "mask",
    ]
    assert attention.attributes.get_float("scale") == 1.0


def test_core_in_subgraph_leaves_outer_head_split(tmp_path: Path) -> None:
    """Attention inside an If branch on a Q split outside it: the branch's nodes are fused, the
    outer split stays (it belongs to another graph)."""
    core = _core()
    core[1].input[0] = "q4"  # the outer graph's head split
    then_branch = helper.make_graph(
        core, "then", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, Q4)]
    )
    else_branch = helper.make_graph(
        [_node("Identity", ["q4"], "z")],
        "else",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, Q4)],
    )
    nodes = [
        *_split("q", [0, 2, 1, 3]),
        helper.make_node("If", ["cond"], ["out"], then_branch=then_branch, else_branch=else_branch),
    ]
    proto = make_model(nodes, {**CORE_INPUTS, "q": [2, 4, 16]}, ["out"], CONSTANTS)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array(True), "cond"))
    model = load(proto, tmp_path)
    before = outputs_of(model)
    assert FuseAttention()(model).modified
    branch = model.graph.node(2).attributes["then_branch"].as_graph()
    assert _ops(model) == ["Reshape", "Transpose", "If"]
    assert [node.op_type for node in branch].count("MultiHeadAttention") == 1
    assert "Softmax" not in [node.op_type for node in branch]
    assert verify(model) == []
    assert_close(before, outputs_of(model))


def test_idempotent(tmp_path: Path) -> None:
    model = _model(tmp_path, _bsd_attention(), BSD_INPUTS)
    assert FuseAttention()(model).modified
    again = FuseAttention()(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def _skip_reasons(model: ir.Model, config: FuseAttentionConfig | None = None) -> list[str]:
    before = _ops(model)
    result = FuseAttention(config)(model)
    assert not result.modified
    assert _ops(model) == before
    return [skip.reason for skip in result.skipped]


def test_other_target_declares_no_fused_attention(tmp_path: Path) -> None:
    model = _model(tmp_path, _core())
    assert _skip_reasons(model, FuseAttentionConfig(target="tvm")) == [
        "target 'tvm' declares no fused attention"
    ]
    (fuse,) = parse_pipeline("fuse-attention{target=tvm}")
    assert fuse.config == FuseAttentionConfig(target="tvm")


def test_skip_softmax_not_over_last_axis(tmp_path: Path) -> None:
    model = _model(tmp_path, _core(softmax_axis=2))
    assert _skip_reasons(model) == ["Softmax runs over axis 2, not the last"]


def test_softmax_default_axis_depends_on_opset(tmp_path: Path) -> None:
    model = _model(tmp_path, _core(softmax_axis=None), opset=11)
    assert _skip_reasons(model) == ["Softmax runs over axis 1, not the last"]
    model = _model(tmp_path, _core(softmax_axis=None), opset=13)
    assert FuseAttention()(model).modified


def test_skip_not_4d(tmp_path: Path) -> None:
    inputs = {"q": [2, 4, 8], "k": [2, 6, 8], "v": [2, 6, 8], "mask": [2, 1, 6]}
    nodes = _core()
    nodes[0] = _node("Transpose", ["k"], "kt", perm=[0, 2, 1])
    assert _skip_reasons(_model(tmp_path, nodes, inputs)) == [
        "the Softmax input is not known to be 4-D [batch, heads, seq, kv_seq]"
    ]


def test_skip_softmax_input_not_scores(tmp_path: Path) -> None:
    nodes = [_node("Softmax", ["a"], "p"), _node("MatMul", ["p", "v"], "y")]
    assert _skip_reasons(_model(tmp_path, nodes, {"a": [2, 2, 4, 6], "v": K4})) == [
        "the Softmax input is not Q @ K^T (times a constant) (plus a mask)"
    ]


def test_skip_probabilities_read_elsewhere(tmp_path: Path) -> None:
    model = _model(tmp_path, _core(), outputs=("y", "p"))
    assert _skip_reasons(model) == ["intermediate value 'p' is a graph output"]


def test_skip_scores_read_elsewhere(tmp_path: Path) -> None:
    model = _model(tmp_path, [*_core(), _node("Relu", ["s"], "z")], outputs=("y", "z"))
    relu = next(node for node in model.graph if node.op_type == "Relu")
    assert _skip_reasons(model) == [
        f"intermediate value 's' is also read by node {node_id(relu)} 'z' (Relu)"
    ]


def test_skip_value_not_4d(tmp_path: Path) -> None:
    inputs = {**CORE_INPUTS, "v": [6, 8]}
    assert _skip_reasons(_model(tmp_path, _core(), inputs)) == [
        "Q, K^T and V are not all known to be 4-D [batch, heads, seq, head]"
    ]


def test_skip_heads_not_static(tmp_path: Path) -> None:
    inputs = {
        "q": [2, "n", 4, 8],
        "k": [2, "n", 6, 8],
        "v": [2, "n", 6, 8],
        "mask": [2, 1, 1, 6],
    }
    assert _skip_reasons(_model(tmp_path, _core(), inputs)) == [
        "Q, K and V do not share a static number of heads"
    ]


def test_skip_batch_broadcast(tmp_path: Path) -> None:
    inputs = {**CORE_INPUTS, "k": [1, 2, 6, 8], "v": [1, 2, 6, 8]}
    assert _skip_reasons(_model(tmp_path, _core(), inputs)) == [
        "Q, K and V have different batch sizes"
    ]


def test_skip_unsupported_type(tmp_path: Path) -> None:
    model = _model(tmp_path, _core(), elem_type=TensorProto.DOUBLE)
    model.graph.initializers["scale"].const_value = ir.tensor(np.array(0.35))
    model.graph.initializers["scale"].dtype = ir.DataType.DOUBLE
    assert _skip_reasons(model) == [
        "MultiHeadAttention takes float, float16 or bfloat16, not DOUBLE"
    ]


def test_skip_mask_not_4d(tmp_path: Path) -> None:
    inputs = {**CORE_INPUTS, "mask": [6]}
    assert _skip_reasons(_model(tmp_path, _core(), inputs)) == [
        "mask 'mask' is not known to be 4-D"
    ]


def test_skip_mask_broadcast_over_keys(tmp_path: Path) -> None:
    inputs = {**CORE_INPUTS, "mask": [2, 1, 4, 1]}
    assert _skip_reasons(_model(tmp_path, _core(), inputs)) == [
        "mask 'mask' of shape [2,1,4,1] does not fit [batch or 1, heads or 1, seq or 1, kv_seq]"
    ]


def test_softmax_without_value_matmul_is_not_a_site(tmp_path: Path) -> None:
    model = _model(tmp_path, [_node("Softmax", ["a"], "y")], {"a": [2, 2, 4, 6]})
    result = FuseAttention()(model)
    assert (result.modified, result.skipped) == (False, ())


@pytest.mark.parametrize(("opset", "seq"), [(14, 16), (14, "seq"), (20, 16)])
def test_bert_like(tmp_path: Path, opset: int, seq: int | str) -> None:
    """Each layer's attention, head split and merge (with their Shape/Gather/Concat shapes) go
    into one MultiHeadAttention; the padding mask is expanded (at run time for a symbolic seq)."""
    model = load(build_bert_like(opset, seq=seq), tmp_path)
    feeds = bert_like_feeds(seq=16)
    before = outputs_of(model, feeds)
    result = FuseAttention()(model)
    ops = _ops(model)
    assert ops.count("MultiHeadAttention") == 2
    assert "Softmax" not in ops and "Transpose" not in ops and "Reshape" not in ops
    assert ops.count("Expand") == 2
    assert result.skipped == ()
    assert verify(model) == []
    assert_close(before, outputs_of(model, feeds))


@pytest.mark.parametrize("opset", [14, 17, 20])
def test_bert_like_fuse_pipeline(tmp_path: Path, opset: int) -> None:
    """The three recognizers on the whole encoder, checked by the manager after each pass."""
    model = load(build_bert_like(opset), tmp_path)
    feeds = bert_like_feeds()
    before = outputs_of(model, feeds)
    passes = parse_pipeline("recognize-gelu,recognize-layernorm,fuse-attention")
    records = run_pipeline(model, passes, [VerifyAfterEachPass()]).records
    assert [(record.pass_name, record.modified, record.skipped) for record in records] == [
        ("recognize-gelu", True, ()),
        ("recognize-layernorm", True, ()),
        ("fuse-attention", True, ()),
    ]
    ops = _ops(model)
    assert (ops.count("Gelu"), ops.count("LayerNormalization")) == (2, 5)
    assert ops.count("MultiHeadAttention") == 2
    assert_close(before, outputs_of(model, feeds))
