"""fold-constants: what folds (static shape chains, ConstantOfShape, Constant nodes, IR v3
initializers, subgraph nodes), every skip reason, idempotence and unchanged numerics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import onnx_ir as oir
import pytest
from onnx_text import load_onnx_text

from ir.model_io import load_model
from passes.audit import ChangeKind, PassRecord
from passes.cleanup import fold_constants
from passes.cleanup.fold_constants import FoldConstants, FoldConstantsConfig
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline
from zoo.catalog import ZOO

REMOVED = ChangeKind.REMOVED_NODE


def _fold(model: oir.Model, config: FoldConstantsConfig | None = None) -> PassRecord:
    """Run the pass checked (IR verified, outputs compared with onnxruntime) and assert that
    the numbers did not move and that a second run changes nothing."""
    instruments = [VerifyAfterEachPass(), NumericCheck(bindings={"N": 2})]
    (record,) = run_pipeline(model, [FoldConstants(config)], instruments).records
    if record.numeric is not None:
        assert all(drift["max_abs"] == 0 for drift in record.numeric["vs_input"])
    assert not FoldConstants(config)(model).modified
    return record


def _ops(graph: oir.Graph) -> list[str]:
    return [node.op_type for node in graph]


def _changes(record: PassRecord) -> list[tuple[ChangeKind, str, tuple[str, ...]]]:
    return [(change.kind, change.rule, change.nodes) for change in record.changes]


def test_static_shape_chain_folds_into_the_reshape_shape(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2,3,4] x) => (float[6,4] y)
          <int64 i0 = {0}, int64 i1 = {1}, int64[1] axes = {0}, int64[1] rest = {-1}> {
          s = Shape(x)
          d0 = Gather<axis = 0>(s, i0)
          d1 = Gather<axis = 0>(s, i1)
          rows = Mul(d0, d1)
          u = Unsqueeze(rows, axes)
          shape = Concat<axis = 0>(u, rest)
          y = Reshape(x, shape)
        }""",
    )
    record = _fold(model)
    assert _ops(model.graph) == ["Reshape"]
    assert _changes(record) == [
        (REMOVED, "static-shape", ("n0",)),
        *[(REMOVED, "fold", (f"n{i}",)) for i in range(1, 6)],
    ]
    assert record.changes[0].reason == (
        "node n0 (Shape) of 'x' (static shape [2,3,4]) folded into initializer 's' (int64[3])"
    )
    shape = model.graph.node(0).inputs[1]
    assert shape.is_initializer()
    assert shape.const_value.numpy().tolist() == [6, -1]


def test_constant_of_shape_folds_to_a_filled_initializer(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2,3] x) => (float[2,3] y) <int64[2] s = {2, 3}> {
          c = ConstantOfShape<value = float[1] {0.5}>(s)
          y = Add(x, c)
        }""",
    )
    record = _fold(model)
    assert _ops(model.graph) == ["Add"]
    assert _changes(record) == [(REMOVED, "fold", ("n0",))]
    assert record.changes[0].reason == (
        "node n0 (ConstantOfShape) reads only constants; folded into initializer 'c' "
        "(float32[2, 3])"
    )
    np.testing.assert_array_equal(model.graph.initializers["c"].const_value.numpy(), 0.5)


def test_constant_nodes_become_initializers(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) {
          a = Constant<value = float[2] {1, 2}>()
          b = Constant<value_float = 3.0>()
          c = Mul(a, b)
          y = Add(x, c)
        }""",
    )
    record = _fold(model)
    assert _ops(model.graph) == ["Add"]
    assert _changes(record) == [
        (REMOVED, "constant-node", ("n0",)),
        (REMOVED, "constant-node", ("n1",)),
        (REMOVED, "fold", ("n2",)),
    ]
    assert record.changes[1].reason == "lifted node n1 (Constant) into initializer 'b' (float32[])"
    assert model.graph.initializers["c"].const_value.numpy().tolist() == [3.0, 6.0]


_IR3_MODEL = """<ir_version: 3, opset_import: ["" : 9]>
g (float[2] x, float[2] w) => (float[2] y) <float[2] w = {1, 2}> {
  c = Neg(w)
  y = Add(x, c)
}"""


def test_ir3_initializers_listed_as_inputs_are_constants_by_default(tmp_path: Path) -> None:
    model = load_onnx_text(tmp_path, _IR3_MODEL)
    record = _fold(model)
    assert _ops(model.graph) == ["Add"]
    assert _changes(record) == [
        (ChangeKind.GRAPH_IO, "initializer-inputs", ()),
        (REMOVED, "fold", ("n0",)),
    ]
    assert record.changes[0].reason == (
        "IR version 3 lists every initializer as a graph input; removed 1 initializers ('w') "
        "from the graph inputs so they are constants, and raised ir_version to 4, the first "
        "that allows that (overridable_initializers=false)"
    )
    assert [value.name for value in model.graph.inputs] == ["x"]
    assert model.ir_version == 4
    onnx.checker.check_model(oir.to_proto(model))


def test_overridable_initializers_are_not_folded(tmp_path: Path) -> None:
    model = load_onnx_text(tmp_path, _IR3_MODEL)
    config = FoldConstantsConfig(overridable_initializers=True)
    record = _fold(model, config)
    assert not record.modified
    assert [(skip.rule, skip.nodes, skip.reason) for skip in record.skipped] == [
        (
            "fold",
            ("n0",),
            "not folded: node n0 (Neg) reads 'w', an initializer that is also a graph input, "
            "so a caller may override it",
        )
    ]
    assert [value.name for value in model.graph.inputs] == ["x", "w"]
    assert model.ir_version == 3


def test_max_elements_option_skips_big_outputs(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[4,30] x) => (float[4,30] y) <int64[2] s = {4, 30}> {
          c = ConstantOfShape<value = float[1] {1.0}>(s)
          y = Add(x, c)
        }""",
    )
    (fold,) = parse_pipeline("fold-constants{max_elements=100}")
    assert fold.config == FoldConstantsConfig(max_elements=100)
    result = fold(model)
    assert not result.modified
    assert [skip.reason for skip in result.skipped] == [
        "not folded: output 'c' of node n0 (ConstantOfShape) has 120 elements > max_elements=100"
    ]


def test_output_size_is_checked_after_evaluating_when_unknown_before(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[40,3] x) => (float[40,3] y) <float[1,3] w = {1, 2, 3}, int64[2] r = {40, 1}> {
          c = Tile(w, r)
          y = Add(x, c)
        }""",
    )
    model.graph.node(0).outputs[0].shape = None  # as if inference had not reached it
    result = FoldConstants(FoldConstantsConfig(max_elements=100))(model)
    assert [skip.reason for skip in result.skipped] == [
        "not folded: output 'c' of node n0 (Tile) has 120 elements > max_elements=100"
    ]
    assert _ops(model.graph) == ["Tile", "Add"]


def test_nondeterministic_ops_are_not_folded(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2,3] x) => (float[2,3] y) {
          r = RandomNormal<shape = [2, 3]>()
          y = Add(x, r)
        }""",
    )
    result = FoldConstants()(model)
    assert not result.modified
    assert [skip.reason for skip in result.skipped] == [
        "not folded: node n0 (RandomNormal) is nondeterministic"
    ]


def test_nodes_with_subgraphs_stay_and_their_inner_nodes_fold(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) <bool cond = {1}, float[2] w = {1, 2}> {
          y = If(cond) <
            then_branch = then () => (float[2] t) { n = Neg(w)  t = Add(n, x) },
            else_branch = else () => (float[2] e) { e = Identity(x) }
          >
        }""",
    )
    record = _fold(model)
    assert _ops(model.graph) == ["If"]
    then_branch = model.graph.node(0).attributes["then_branch"].as_graph()
    assert _ops(then_branch) == ["Add"]
    assert then_branch.initializers["n"].const_value.numpy().tolist() == [-1.0, -2.0]
    assert [(change.rule, change.reason.split(";")[0]) for change in record.changes] == [
        ("fold", "node n1 (Neg) reads only constants")
    ]
    assert [skip.reason for skip in record.skipped] == ["not folded: node n0 (If) has subgraphs"]


def test_opsets_onnxruntime_dropped_fold_with_the_reference_evaluator(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 4, opset_import: ["" : 6]>
        g (float[2] x) => (float[2] y) <float[2] w = {1, 2}, float[2] v = {3, 4}> {
          c = Add(w, v)
          y = Add(x, c)
        }""",
    )
    result = FoldConstants()(model)
    assert [change.rule for change in result.changes] == ["fold"]
    assert model.graph.initializers["c"].const_value.numpy().tolist() == [4.0, 6.0]


def test_nodes_no_runtime_can_evaluate_are_skipped(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[1] x) => (float[1] y) <float[2] w = {1, 2}, int64[1] i = {5}> {
          c = Gather<axis = 0>(w, i)
          y = Add(x, c)
        }""",
    )
    result = FoldConstants()(model)
    assert not result.modified
    (skip,) = result.skipped
    assert skip.reason.startswith(
        "not folded: node n0 (Gather) could not be evaluated: reference path: "
    )
    assert "; ONNX evaluator: " in skip.reason


def test_constant_nodes_no_runtime_can_evaluate_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) {
          c = Constant<value = float[2] {1, 2}>()
          y = Add(x, c)
        }""",
    )

    def fail(one: oir.Model) -> list[np.ndarray]:
        raise RuntimeError("no kernel")

    monkeypatch.setattr(fold_constants, "_run_reference_path", fail)
    monkeypatch.setattr(fold_constants, "_run_evaluator", fail)
    result = FoldConstants()(model)
    assert [skip.reason for skip in result.skipped] == [
        "not lifted: node n0 (Constant) could not be evaluated: reference path: no kernel; "
        "ONNX evaluator: no kernel"
    ]


def test_shape_folds_only_the_static_part(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N,3] x) => (int64[2] s, int64[1] t) {
          s = Shape(x)
          t = Shape<start = 1>(x)
        }""",
    )
    record = _fold(model)
    assert _ops(model.graph) == ["Shape"]
    assert _changes(record) == [(REMOVED, "static-shape", ("n1",))]
    assert [skip.reason for skip in record.skipped] == [
        "not folded: node n0 (Shape) reads 'x' of shape [N,3], which is not static"
    ]
    assert [value.name for value in model.graph.outputs] == ["s", "t"]
    assert model.graph.outputs[1].const_value.numpy().tolist() == [3]


def test_light_resnet50_cleanup_keeps_outputs_and_verifies() -> None:
    model = load_model(ZOO["onnx-light-resnet50"].file)
    instruments = [VerifyAfterEachPass(), NumericCheck()]
    records = run_pipeline(model, parse_pipeline("cleanup"), instruments).records
    assert [record.pass_name for record in records] == [
        "fold-constants",
        "remove-identity",
        "cse",
        "dce",
    ]
    for record in records:
        if record.numeric is not None:
            assert all(drift["max_abs"] <= 1e-5 for drift in record.numeric["vs_input"])
    assert "ConstantOfShape" not in _ops(model.graph)
    assert records[0].node_count == (415, 176)
    again = run_pipeline(model, parse_pipeline("cleanup")).records
    assert not any(record.modified for record in again)
