"""fuse-matmul-add: MatMul + Add becomes Gemm (the graph before and the graph expected after),
with the same outputs on onnxruntime, and every skip says why."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper, numpy_helper
from rewrite_cases import check_rewrite, check_skip

from ir.model_io import load_model
from ir.node_ids import provenance
from ir.reference import run_reference
from passes.audit import Change, ChangeKind, Skip
from passes.base import PassResult
from passes.fusion.fuse_matmul_add import FuseMatMulAdd, FuseMatMulAddConfig
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline

FLOAT = TensorProto.FLOAT
DEPTH, WIDTH = 4, 5
RESHAPE_ND = FuseMatMulAddConfig(reshape_nd=True)


def _text(
    *,
    a: str = "float[3,2] a",
    weight: str = "float[2,2] w = {1, 2, 3, 4}",
    bias: str = "float[2] b = {0.5, -1}",
    body: str = "m = MatMul(a, w)\n y = Add(m, b)",
    outputs: str = "float[3,2] y",
) -> str:
    """ONNX text of a -> MatMul(a, w) -> Add(., b) -> y (or `body`); `weight` and `bias` are
    initializers unless they are written without contents (then they are graph inputs)."""
    declared = ", ".join(text for text in (weight, bias) if "=" in text)
    inputs = [a, *(text for text in (weight, bias) if text and "=" not in text)]
    return f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g ({", ".join(inputs)}) => ({outputs}) {f"<{declared}>" if declared else ""}
        {{
            {body}
        }}
    """


def test_matmul_plus_bias_becomes_gemm(tmp_path: Path) -> None:
    result = check_rewrite(tmp_path, FuseMatMulAdd(), _text(), _text(body="y = Gemm(a, w, b)"))
    assert result.skipped == ()


def test_bias_first_becomes_the_same_gemm(tmp_path: Path) -> None:
    before = _text(body="m = MatMul(a, w)\n y = Add(b, m)")
    check_rewrite(tmp_path, FuseMatMulAdd(), before, _text(body="y = Gemm(a, w, b)"))


def test_reshape_nd_fuses_a_rank_three_input_on_its_flattened_rows(tmp_path: Path) -> None:
    before = _text(a="float[2,3,2] a", bias="float[1,1,2] b = {0.5, -1}", outputs="float[2,3,2] y")
    expected = _text(
        a="float[2,3,2] a",
        bias="float[2] b_row = {0.5, -1}, int64[2] rows = {6, 2}, int64[3] dims = {2, 3, 2}",
        body="f = Reshape(a, rows)\n g = Gemm(f, w, b_row)\n y = Reshape(g, dims)",
        outputs="float[2,3,2] y",
    )
    result = check_rewrite(tmp_path, FuseMatMulAdd(RESHAPE_ND), before, expected)
    added = {change.rule for change in result.changes if change.kind == ChangeKind.ADDED_NODE}
    assert added == {"matmul-add-reshape-gemm"}


def _skip(tmp_path: Path, before: str, config: FuseMatMulAddConfig | None = None) -> Skip:
    """The one skip of a pass that must leave `before` as it is."""
    (skip,) = check_skip(tmp_path, FuseMatMulAdd(config), before)
    assert skip.rule == "matmul-add-gemm" and skip.nodes == ("n0", "n1")
    return skip


SKIPS = {
    "a MatMul output with another reader": (
        _text(
            body="m = MatMul(a, w)\n y = Add(m, b)\n r = Relu(m)",
            outputs="float[3,2] y, float[3,2] r",
        ),
        "MatMul output has 2 consumers",
    ),
    "a MatMul output that is a graph output": (
        _text(outputs="float[3,2] y, float[3,2] m"),
        "MatMul output is a graph output",
    ),
    "a weight that is a graph input": (
        _text(weight="float[2,2] w"),
        "MatMul weight 'w' is a graph input",
    ),
    "a weight of rank three": (
        _text(weight="float[1,2,2] w = {1, 2, 3, 4}", outputs="float[1,3,2] y"),
        "MatMul weight 'w' has rank 3; Gemm needs 2-D",
    ),
    "a bias that is a graph input": (
        _text(bias="float[2] b"),
        "input 1 of Add 'b' is a graph input",
    ),
    "an input of rank three": (
        _text(a="float[2,3,2] a", outputs="float[2,3,2] y"),
        "MatMul input has rank 3; Gemm needs 2-D (reshape_nd=true would fuse it through Reshapes)",
    ),
    "an input of rank one": (
        _text(a="float[2] a", outputs="float[2] y"),
        "MatMul input has rank 1; Gemm needs 2-D",
    ),
    "a bias that would grow the output": (
        _text(
            bias="float[2,3,2] b = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}",
            outputs="float[2,3,2] y",
        ),
        "bias shape [2,3,2] does not broadcast to the MatMul output [3,2]",
    ),
    "a bias whose rows are not provably broadcast": (
        _text(a="float[N,2] a", bias="float[3,2] b = {1, 2, 3, 4, 5, 6}", outputs="float[N,2] y"),
        "bias shape [3,2] does not broadcast to the MatMul output [N,2]",
    ),
}


@pytest.mark.parametrize("case", SKIPS)
def test_skips(tmp_path: Path, case: str) -> None:
    before, reason = SKIPS[case]
    assert _skip(tmp_path, before).reason == f"MatMul+Add not fused: {reason}"


def test_reshape_nd_skips_dynamic_shapes(tmp_path: Path) -> None:
    before = _text(a="float[N,3,2] a", outputs="float[N,3,2] y")
    assert _skip(tmp_path, before, RESHAPE_ND).reason == (
        "MatMul+Add not fused: MatMul input shape [N,3,2] is not static; reshape_nd needs "
        "static shapes"
    )


def test_reshape_nd_skips_a_bias_that_varies_along_the_rows(tmp_path: Path) -> None:
    before = _text(
        a="float[2,3,2] a", bias="float[3,2] b = {1, 2, 3, 4, 5, 6}", outputs="float[2,3,2] y"
    )
    assert _skip(tmp_path, before, RESHAPE_ND).reason == (
        "MatMul+Add not fused: bias shape [3,2] varies along the leading axes that reshape_nd "
        "folds into Gemm's rows"
    )


def test_add_of_two_matmuls_reports_both_sites(tmp_path: Path) -> None:
    """Neither MatMul has a constant beside it (as in attention sums): both sites are reported,
    each by the other product."""
    before = _text(body="m2 = MatMul(a, w)\n m3 = MatMul(a, w)\n y = Add(m2, m3)", bias="")
    skips = check_skip(tmp_path, FuseMatMulAdd(), before)
    prefix = "MatMul+Add not fused: input"
    assert [(skip.nodes, skip.reason) for skip in skips] == [
        (("n0", "n2"), f"{prefix} 1 of Add 'm3' is computed by a MatMul node"),
        (("n1", "n2"), f"{prefix} 0 of Add 'm2' is computed by a MatMul node"),
    ]


def _model(
    tmp_path: Path,
    *,
    a_shape: Sequence[int | str] | None = (3, DEPTH),
    bias_shape: tuple[int, ...] = (WIDTH,),
    bias_first: bool = False,
) -> oir.Model:
    """a -> MatMul(a, w) (n0) -> Add with b (n1) -> y, with random weights."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((DEPTH, WIDTH)).astype(np.float32),
        "b": rng.standard_normal(bias_shape).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["a", "w"], ["m"], name="matmul"),
        helper.make_node("Add", ["b", "m"] if bias_first else ["m", "b"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "matmul_add",
        [helper.make_tensor_value_info("a", FLOAT, a_shape)],
        [helper.make_tensor_value_info("y", FLOAT, None)],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    path = tmp_path / "matmul_add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return load_model(path)


def _fuse_and_compare(model: oir.Model, config: FuseMatMulAddConfig | None = None) -> PassResult:
    """Fuse, and check that onnxruntime gives the same outputs before and after."""
    shape = [dim if isinstance(dim, int) else 2 for dim in model.graph.inputs[0].shape]
    feeds = {"a": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
    before = run_reference(model, feeds)
    result = FuseMatMulAdd(config)(model)
    assert result.modified
    for expected, got in zip(before, run_reference(model, feeds), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    return result


def test_the_audit_records_the_gemm_replacing_both_nodes(tmp_path: Path) -> None:
    model = _model(tmp_path)
    result = _fuse_and_compare(model)
    reason = "MatMul by a constant weight plus a constant bias is one Gemm"
    rule = "matmul-add-gemm"
    assert result.changes == (
        Change(ChangeKind.ADDED_NODE, ("n2",), rule, reason, replaces=("n0", "n1")),
        Change(ChangeKind.REMOVED_NODE, ("n0",), rule, reason),
        Change(ChangeKind.REMOVED_NODE, ("n1",), rule, reason),
    )
    (gemm,) = model.graph
    assert gemm.name == "matmul" and provenance(gemm)["replaces"] == ["n0", "n1"]
    assert [value.name for value in gemm.inputs] == ["a", "w", "b"]
    assert gemm.outputs[0].name == "y"


@pytest.mark.parametrize(
    ("bias_shape", "bias_first"),
    [((WIDTH,), True), ((3, WIDTH), False), ((3, 1), False), ((1, WIDTH), True), ((), False)],
)
def test_every_bias_gemm_can_broadcast_gives_the_same_outputs(
    tmp_path: Path, bias_shape: tuple[int, ...], bias_first: bool
) -> None:
    _fuse_and_compare(_model(tmp_path, bias_shape=bias_shape, bias_first=bias_first))


def test_symbolic_rows_are_fine_in_two_dimensions(tmp_path: Path) -> None:
    _fuse_and_compare(_model(tmp_path, a_shape=["batch", DEPTH]))


def test_reshape_nd_gives_the_same_outputs(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=[2, 3, DEPTH], bias_shape=(1, 1, WIDTH))
    _fuse_and_compare(model, RESHAPE_ND)
    assert [node.op_type for node in model.graph] == ["Reshape", "Gemm", "Reshape"]
    assert model.graph.node(1).outputs[0].shape == oir.Shape([6, WIDTH])


def test_skips_an_input_of_unknown_rank(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=None)
    (skip,) = FuseMatMulAdd()(model).skipped
    assert skip.reason == "MatMul+Add not fused: MatMul input has unknown rank; Gemm needs 2-D"


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=[2, 3, DEPTH])
    FuseMatMulAdd(RESHAPE_ND)(model)
    again = FuseMatMulAdd(RESHAPE_ND)(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def test_pipeline_records_numeric_drift(tmp_path: Path) -> None:
    model = _model(tmp_path, a_shape=[2, 3, DEPTH])
    passes = parse_pipeline("fuse-matmul-add{reshape_nd=true}")
    (record,) = run_pipeline(model, passes, [VerifyAfterEachPass(), NumericCheck()]).records
    assert record.config == {"reshape_nd": True}
    assert record.rule_counts() == {"matmul-add-reshape-gemm": 1}
    (drift,) = record.numeric["vs_input"]
    assert drift["shape_match"] and drift["cosine"] >= 0.99999 and drift["max_rel"] < 1e-4
