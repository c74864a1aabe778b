"""fuse-matmul-add: MatMul + Add becomes Gemm with the same outputs, and every skip says why."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.model_io import load_model
from ir.node_ids import provenance
from ir.reference import run_reference
from passes.audit import Change, ChangeKind
from passes.base import PassResult
from passes.fusion.fuse_matmul_add import FuseMatMulAdd, FuseMatMulAddConfig
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline

FLOAT = TensorProto.FLOAT
DEPTH, WIDTH = 4, 5


def _model(
    tmp_path: Path,
    *,
    a_shape: Sequence[int | str] | None = (3, DEPTH),
    w_shape: tuple[int, ...] = (DEPTH, WIDTH),
    bias_shape: tuple[int, ...] = (WIDTH,),
    bias_first: bool = False,
    not_initializers: tuple[str, ...] = (),
    after: tuple[onnx.NodeProto, ...] = (),
    outputs: tuple[str, ...] = ("y",),
) -> ir.Model:
    """a -> MatMul(a, w) (n0) -> Add with b (n1) -> y, then the nodes `after`; a weight named in
    `not_initializers` is a graph input instead."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal(w_shape).astype(np.float32),
        "b": rng.standard_normal(bias_shape).astype(np.float32),
    }
    add_inputs = ["b", "m"] if bias_first else ["m", "b"]
    nodes = [
        helper.make_node("MatMul", ["a", "w"], ["m"], name="matmul"),
        helper.make_node("Add", add_inputs, ["y"], name="add"),
        *after,
    ]
    inputs = [helper.make_tensor_value_info("a", FLOAT, a_shape)]
    inputs += [
        helper.make_tensor_value_info(name, FLOAT, list(weights[name].shape))
        for name in not_initializers
    ]
    graph = helper.make_graph(
        nodes,
        "matmul_add",
        inputs,
        [helper.make_tensor_value_info(name, FLOAT, None) for name in outputs],
        [
            numpy_helper.from_array(array, name)
            for name, array in weights.items()
            if name not in not_initializers
        ],
    )
    path = tmp_path / "matmul_add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return load_model(path)


def _ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def _feeds(model: ir.Model) -> dict[str, np.ndarray]:
    shape = [dim if isinstance(dim, int) else 2 for dim in model.graph.inputs[0].shape]
    return {"a": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}


def _fuse_and_compare(model: ir.Model, config: FuseMatMulAddConfig | None = None) -> PassResult:
    feeds = _feeds(model)
    before = run_reference(model, feeds)
    result = FuseMatMulAdd(config)(model)
    for expected, got in zip(before, run_reference(model, feeds), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    return result


def test_matmul_add_becomes_gemm(tmp_path: Path) -> None:
    model = _model(tmp_path)
    result = _fuse_and_compare(model)
    assert _ops(model) == ["Gemm"]
    reason = "MatMul by a constant weight plus a constant bias is one Gemm"
    rule = "matmul-add-gemm"
    assert result.changes == (
        Change(ChangeKind.ADDED_NODE, ("n2",), rule, reason, replaces=("n0", "n1")),
        Change(ChangeKind.REMOVED_NODE, ("n0",), rule, reason),
        Change(ChangeKind.REMOVED_NODE, ("n1",), rule, reason),
    )
    (gemm,) = model.graph
    assert gemm.domain == "" and gemm.name == "matmul"
    assert provenance(gemm)["replaces"] == ["n0", "n1"]
    assert [value.name for value in gemm.inputs] == ["a", "w", "b"]
    assert gemm.outputs[0].name == "y"
    assert dict(gemm.attributes) == {}


@pytest.mark.parametrize(
    ("bias_shape", "bias_first"),
    [((WIDTH,), True), ((3, WIDTH), False), ((3, 1), False), ((1, WIDTH), True), ((), False)],
)
def test_every_bias_gemm_can_broadcast_is_fused(
    tmp_path: Path, bias_shape: tuple[int, ...], bias_first: bool
) -> None:
    model = _model(tmp_path, bias_shape=bias_shape, bias_first=bias_first)
    assert _fuse_and_compare(model).modified
    assert _ops(model) == ["Gemm"]


def test_symbolic_rows_are_fine_in_two_dimensions(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=["batch", DEPTH])
    assert _fuse_and_compare(model).modified
    assert _ops(model) == ["Gemm"]


def test_reshape_nd_fuses_higher_rank_inputs_through_reshapes(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=[2, 3, DEPTH], bias_shape=(1, 1, WIDTH))
    result = _fuse_and_compare(model, FuseMatMulAddConfig(reshape_nd=True))
    assert _ops(model) == ["Reshape", "Gemm", "Reshape"]
    added = [change for change in result.changes if change.kind == ChangeKind.ADDED_NODE]
    assert [change.nodes for change in added] == [("n2",), ("n3",), ("n4",)]
    assert {(change.rule, change.replaces) for change in added} == {
        ("matmul-add-reshape-gemm", ("n0", "n1"))
    }
    flatten, gemm, unflatten = model.graph
    assert flatten.inputs[1].const_value.numpy().tolist() == [6, DEPTH]
    assert gemm.inputs[2].const_value.numpy().shape == (WIDTH,)
    assert unflatten.inputs[1].const_value.numpy().tolist() == [2, 3, WIDTH]
    assert gemm.outputs[0].shape == ir.Shape([6, WIDTH])
    assert unflatten.outputs[0].name == "y"


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=[2, 3, DEPTH])
    config = FuseMatMulAddConfig(reshape_nd=True)
    FuseMatMulAdd(config)(model)
    again = FuseMatMulAdd(config)(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def test_pipeline_records_numeric_drift(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=[2, 3, DEPTH])
    passes = parse_pipeline("fuse-matmul-add{reshape_nd=true}")
    (record,) = run_pipeline(model, passes, [VerifyAfterEachPass(), NumericCheck()]).records
    assert record.config == {"reshape_nd": True}
    assert record.rule_counts() == {"matmul-add-reshape-gemm": 1}
    (drift,) = record.numeric["vs_input"]
    assert drift["shape_match"] and drift["cosine"] >= 0.99999 and drift["max_rel"] < 1e-4


def _skip_reason(model: ir.Model, config: FuseMatMulAddConfig | None = None) -> str:
    """The one skip of a pass that must not change the model."""
    ops = _ops(model)
    result = FuseMatMulAdd(config)(model)
    assert not result.modified and _ops(model) == ops
    (skip,) = result.skipped
    assert skip.rule == "matmul-add-gemm" and skip.nodes == ("n0", "n1")
    assert skip.reason.startswith("MatMul+Add not fused: ")
    return skip.reason.removeprefix("MatMul+Add not fused: ")


def test_skips_a_matmul_output_with_another_reader(tmp_path: Path) -> None:
    relu = helper.make_node("Relu", ["m"], ["r"])
    model = _model(tmp_path, after=(relu,), outputs=("y", "r"))
    assert _skip_reason(model) == "MatMul output has 2 consumers"


def test_skips_a_matmul_output_that_is_a_graph_output(tmp_path: Path) -> None:
    model = _model(tmp_path, outputs=("y", "m"))
    assert _skip_reason(model) == "MatMul output is a graph output"


def test_skips_a_weight_that_is_not_constant(tmp_path: Path) -> None:
    model = _model(tmp_path, not_initializers=("w",))
    assert _skip_reason(model) == (
        "MatMul's B 'w' is a graph input; only a product with a constant weight becomes Gemm"
    )


def test_skips_a_bias_that_is_not_constant(tmp_path: Path) -> None:
    model = _model(tmp_path, not_initializers=("b",))
    assert _skip_reason(model) == "Add's other input 'b' is a graph input"


def test_skips_a_weight_of_rank_three(tmp_path: Path) -> None:
    model = _model(tmp_path, w_shape=(2, DEPTH, WIDTH))
    assert _skip_reason(model) == "MatMul's B has rank 3; Gemm needs 2-D"


@pytest.mark.parametrize(
    ("a_shape", "reason"),
    [
        (
            [2, 3, DEPTH],
            "MatMul input has rank 3; Gemm needs 2-D "
            "(reshape_nd=true would fuse it through Reshapes)",
        ),
        ([DEPTH], "MatMul input has rank 1; Gemm needs 2-D"),
        (None, "MatMul input has unknown rank; Gemm needs 2-D"),
    ],
)
def test_skips_inputs_that_are_not_two_dimensional(
    tmp_path: Path, a_shape: list[int] | None, reason: str
) -> None:
    assert _skip_reason(_model(tmp_path, a_shape=a_shape)) == reason


def test_skips_a_bias_that_would_grow_the_output(tmp_path: Path) -> None:
    model = _model(tmp_path, bias_shape=(2, 3, WIDTH))
    assert _skip_reason(model) == (
        "bias shape [2,3,5] does not broadcast to the MatMul output [3,5]"
    )


def test_skips_a_bias_whose_rows_are_not_provably_broadcast(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=["batch", DEPTH], bias_shape=(3, WIDTH))
    assert _skip_reason(model) == (
        "bias shape [3,5] does not broadcast to the MatMul output [batch,5]"
    )


def test_reshape_nd_skips_dynamic_shapes(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=["batch", 3, DEPTH])
    assert _skip_reason(model, FuseMatMulAddConfig(reshape_nd=True)) == (
        "MatMul input shape [batch,3,4] is not static; reshape_nd needs static shapes"
    )


def test_reshape_nd_skips_a_bias_that_varies_along_the_rows(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=[2, 3, DEPTH], bias_shape=(3, WIDTH))
    assert _skip_reason(model, FuseMatMulAddConfig(reshape_nd=True)) == (
        "bias shape [3,5] varies along the leading axes that reshape_nd folds into Gemm's rows"
    )


def test_add_of_two_matmuls_reports_both_sites(tmp_path: Path) -> None:
    """Neither MatMul has a constant beside it (as in attention sums): both sites are reported."""
    after = (
        helper.make_node("MatMul", ["a", "w"], ["m2"]),
        helper.make_node("MatMul", ["a", "w"], ["m3"]),
        helper.make_node("Add", ["m2", "m3"], ["z"]),
    )
    model = _model(tmp_path, after=after, outputs=("y", "z"))
    result = FuseMatMulAdd()(model)
    assert _ops(model) == ["Gemm", "MatMul", "MatMul", "Add"]
    prefix = "MatMul+Add not fused: Add's other input"
    assert [(skip.nodes, skip.reason) for skip in result.skipped] == [
        (("n2", "n4"), f"{prefix} 'm3' is computed by a MatMul node"),
        (("n3", "n4"), f"{prefix} 'm2' is computed by a MatMul node"),
    ]
