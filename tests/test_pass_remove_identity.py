"""remove-identity: each kind of no-op goes, look-alikes stay, graph output names survive, and
every skip reason has a case."""

from __future__ import annotations

from pathlib import Path

import onnx_ir as oir
import pytest
from onnx_text import load_onnx_text

from passes.audit import ChangeKind, PassRecord
from passes.base import PassResult
from passes.cleanup.remove_identity import RemoveIdentity
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def _remove(model: oir.Model) -> PassRecord:
    """Run the pass checked (IR verified, outputs compared with onnxruntime) and assert that
    the numbers did not move and that a second run changes nothing."""
    (record,) = run_pipeline(
        model, [RemoveIdentity()], [VerifyAfterEachPass(), NumericCheck()]
    ).records
    if record.numeric is not None:
        assert all(drift["max_abs"] == 0 for drift in record.numeric["vs_input"])
    assert not RemoveIdentity()(model).modified
    return record


def _ops(graph: oir.Graph) -> list[str]:
    return [node.op_type for node in graph]


def _removed(record: PassRecord | PassResult) -> list[tuple[str, tuple[str, ...]]]:
    assert all(change.kind == ChangeKind.REMOVED_NODE for change in record.changes)
    return [(change.rule, change.nodes) for change in record.changes]


def test_identity_is_removed_and_readers_rewired(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2,3] x) => (float[2,3] y) {
          a = Identity(x)
          y = Relu(a)
        }""",
    )
    record = _remove(model)
    assert _ops(model.graph) == ["Relu"]
    assert _removed(record) == [("identity", ("n0",))]
    assert record.changes[0].reason == (
        "node n0 (Identity) passes its input through; readers of 'a' now read 'x'"
    )
    assert model.graph.node(0).inputs[0] is model.graph.inputs[0]


def test_identity_before_a_graph_output_hands_over_the_name(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2,3] x) => (float[2,3] y) {
          a = Relu(x)
          y = Identity(a)
        }""",
    )
    record = _remove(model)
    assert _ops(model.graph) == ["Relu"]
    assert record.changes[0].reason == (
        "node n1 (Identity) passes its input through; readers of 'y' now read 'a', which takes "
        "over the graph output name 'y'"
    )
    assert [value.name for value in model.graph.outputs] == ["y"]
    assert model.graph.outputs[0].producer() is model.graph.node(0)


def test_identity_from_graph_input_to_graph_output_is_kept(tmp_path: Path) -> None:
    model = load_onnx_text(tmp_path, HEADER + "g (float[2] x) => (float[2] y) { y = Identity(x) }")
    record = _remove(model)
    assert not record.modified
    assert [(skip.rule, skip.nodes, skip.reason) for skip in record.skipped] == [
        (
            "identity",
            ("n0",),
            "kept node n0 (Identity): it passes its input through, but its output 'y' is a "
            "graph output and 'x' is a graph input",
        )
    ]


def test_identity_returning_an_outer_value_from_a_subgraph_is_kept(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2] x, bool c) => (float[2] y) {
          a = Relu(x)
          y = If(c) <
            then_branch = then () => (float[2] t) { t = Identity(a) },
            else_branch = else () => (float[2] e) { i = Identity(a)  e = Neg(i) }
          >
        }""",
    )
    record = _remove(model)
    else_branch = model.graph.node(1).attributes["else_branch"].as_graph()
    assert _ops(else_branch) == ["Neg"]
    assert _removed(record) == [("identity", ("n3",))]
    assert [skip.reason for skip in record.skipped] == [
        "kept node n2 (Identity): it passes its input through, but its output 't' is a "
        "graph output and 'a' comes from an enclosing graph"
    ]


_DROPOUT_MODEL = (
    HEADER
    + """g (float[2,3] x, bool train) => (float[2,3] y, float[2,3] z, float[2,3] w, bool[2,3] m)
    <float ratio = {0.5}, bool off = {0}> {
      a = Dropout(x)
      y = Relu(a)
      b = Dropout(x, ratio, off)
      z = Relu(b)
      w, m = Dropout(x)
      v = Dropout(x, ratio, train)
      u = Relu(v)
    }"""
)


def test_dropout_is_removed_in_inference_mode_only(tmp_path: Path) -> None:
    model = load_onnx_text(tmp_path, _DROPOUT_MODEL)
    record = RemoveIdentity()(model)
    assert _ops(model.graph) == ["Relu", "Relu", "Dropout", "Dropout", "Relu"]
    assert _removed(record) == [("dropout", ("n0",)), ("dropout", ("n2",))]
    assert [(skip.rule, skip.reason) for skip in record.skipped] == [
        ("dropout", "kept node n4 (Dropout): its mask output 'm' is read"),
        ("dropout", "kept node n5 (Dropout): its training_mode 'train' is not a constant false"),
    ]


def test_old_dropout_in_training_mode_is_kept(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 3, opset_import: ["" : 6]>
        g (float[2,3] x) => (float[2,3] y) {
          a = Dropout<is_test = 0>(x)
          b = Dropout<is_test = 1>(a)
          y = Relu(b)
        }""",
    )
    result = RemoveIdentity()(model)
    assert _ops(model.graph) == ["Dropout", "Relu"]
    assert _removed(result) == [("dropout", ("n1",))]
    assert [skip.reason for skip in result.skipped] == [
        "kept node n0 (Dropout): is_test=0 puts this Dropout in training mode"
    ]


def test_dropout_removal_keeps_outputs(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2,3] x) => (float[2,3] y) <float ratio = {0.5}, bool off = {0}> {
          a = Dropout(x, ratio, off)
          y = Relu(a)
        }""",
    )
    assert _removed(_remove(model)) == [("dropout", ("n0",))]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("a = Cast<to = 1>(x)", "cast"),
        ("a = CastLike(x, like)", "cast"),
        ("a = Reshape(x, same)", "reshape"),
        ("a = Reshape(x, copy)", "reshape"),
        ("a = Expand(x, ones)", "expand"),
        ("a = Transpose<perm = [0, 1]>(x)", "transpose"),
        ("a = Pad(x, zeros)", "pad"),
        ("a = Slice(x, start, end, axis)", "slice"),
        ("a = Mul(x, one)", "arithmetic"),
        ("a = Mul(one, x)", "arithmetic"),
        ("a = Add(zero, x)", "arithmetic"),
        ("a = Sub(x, zero)", "arithmetic"),
        ("a = Div(x, one)", "arithmetic"),
    ],
)
def test_no_ops_are_removed(tmp_path: Path, body: str, rule: str) -> None:
    model = load_onnx_text(tmp_path, _one_op_model(body))
    record = _remove(model)
    assert _ops(model.graph) == ["Relu"]
    assert _removed(record) == [(rule, ("n0",))]


@pytest.mark.parametrize(
    "body",
    [
        "a = Cast<to = 6>(x)",
        "a = Reshape(x, flat)",
        "a = Transpose<perm = [1, 0]>(x)",
        "a = Pad(x, some)",
        "a = Slice(x, one_i, end, axis)",
        "a = Sub(zero, x)",
        "a = Mul(x, zero)",
    ],
)
def test_look_alikes_stay(tmp_path: Path, body: str) -> None:
    model = load_onnx_text(tmp_path, _one_op_model(body))
    result = RemoveIdentity()(model)
    assert not result.modified
    assert not result.skipped


def _one_op_model(body: str) -> str:
    """`body` computes `a` from x[2,3] with the constants below; a Relu reads `a`."""
    return (
        HEADER
        + """g (float[2,3] x) => (float[2,3] y) <
          float[1] like = {0}, int64[2] same = {2, 3}, int64[2] copy = {0, -1},
          int64[2] flat = {3, 2}, int64[2] ones = {1, 3}, int64[4] zeros = {0, 0, 0, 0},
          int64[4] some = {0, 1, 0, 0}, int64[1] start = {0},
          int64[1] end = {9223372036854775807}, int64[1] axis = {1}, int64[1] one_i = {1},
          float one = {1}, float[1,3] zero = {0, 0, 0}> {
          """
        + body
        + """
          y = Relu(a)
        }"""
    )


def test_arithmetic_that_broadcasts_is_kept(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[3] x) => (float[2,3] y) <float[2,3] ones = {1, 1, 1, 1, 1, 1}> {
          a = Mul(x, ones)
          y = Relu(a)
        }""",
    )
    result = RemoveIdentity()(model)
    assert [(skip.rule, skip.reason) for skip in result.skipped] == [
        (
            "arithmetic",
            "kept node n0 (Mul): it multiplies by constant 1, but broadcasting with the [2,3] "
            "constant changes the shape of 'x' [3]",
        )
    ]


def test_arithmetic_on_a_value_of_unknown_shape_is_kept(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[3] x) => (float[3] y) <float zero = {0}> {
          a = Add(x, zero)
          y = Relu(a)
        }""",
    )
    model.graph.inputs[0].shape = None
    result = RemoveIdentity()(model)
    assert [(skip.rule, skip.reason) for skip in result.skipped] == [
        (
            "arithmetic",
            "kept node n0 (Add): it adds constant 0, but the shape of 'x' is unknown, so "
            "broadcasting cannot be ruled out",
        )
    ]
