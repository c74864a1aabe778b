"""cse: duplicates merge (cascading through their readers), exact attribute comparison, equal
small initializers, graph output names, and every skip reason."""

from __future__ import annotations

from pathlib import Path

import onnx_ir as oir
from onnx_text import load_onnx_text

from passes.audit import ChangeKind, PassRecord
from passes.cleanup.cse import Cse, CseConfig
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def _cse(model: oir.Model, config: CseConfig | None = None) -> PassRecord:
    """Run the pass checked (IR verified, outputs compared with onnxruntime) and assert that
    the numbers did not move and that a second run changes nothing."""
    instruments = [VerifyAfterEachPass(), NumericCheck()]
    (record,) = run_pipeline(model, [Cse(config)], instruments).records
    if record.numeric is not None:
        assert all(drift["max_abs"] == 0 for drift in record.numeric["vs_input"])
    assert not Cse(config)(model).modified
    return record


def _ops(graph: oir.Graph) -> list[str]:
    return [node.op_type for node in graph]


def _changes(record: PassRecord) -> list[tuple[ChangeKind, str, tuple[str, ...]]]:
    return [(change.kind, change.rule, change.nodes) for change in record.changes]


def test_duplicates_merge_and_the_merge_cascades(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2,3] x) => (float[2,3] y) {
          a = Relu(x)
          b = Relu(x)
          c = Sigmoid(a)
          d = Sigmoid(b)
          y = Add(c, d)
        }""",
    )
    record = _cse(model)
    assert _ops(model.graph) == ["Relu", "Sigmoid", "Add"]
    assert _changes(record) == [
        (ChangeKind.REMOVED_NODE, "cse", ("n1",)),
        (ChangeKind.REMOVED_NODE, "cse", ("n3",)),
    ]
    assert record.changes[0].reason == (
        "node n1 (Relu) computes the same as node n0 (Relu) (same inputs and attributes); its "
        "readers now read the outputs of the first"
    )
    add = model.graph.node(2)
    assert add.inputs[0] is add.inputs[1]


def test_attributes_are_compared_exactly(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2,3] x) => (float[2,3] y) {
          a = LeakyRelu<alpha = 0.1>(x)
          b = LeakyRelu<alpha = 0.1>(x)
          c = LeakyRelu<alpha = 0.2>(x)
          k1 = Constant<value = float[3] k1 {1, 2, 3}>()
          k2 = Constant<value = float[3] k2 {1, 2, 3}>()
          k3 = Constant<value = float[3] k3 {1, 2, 4}>()
          s1 = Add(a, b)
          s2 = Add(s1, c)
          s3 = Mul(s2, k1)
          s4 = Mul(s3, k2)
          y = Mul(s4, k3)
        }""",
    )
    record = _cse(model)
    assert [change.nodes for change in record.changes] == [("n1",), ("n4",)]
    assert _ops(model.graph) == [
        "LeakyRelu",
        "LeakyRelu",
        "Constant",
        "Constant",
        "Add",
        "Add",
        "Mul",
        "Mul",
        "Mul",
    ]


def test_equal_small_initializers_merge(tmp_path: Path) -> None:
    text = (
        HEADER
        + """g (float[3] x) => (float[3] y) <float[3] w1 = {1, 2, 3}, float[3] w2 = {1, 2, 3}> {
          a = Add(x, w1)
          b = Add(x, w2)
          y = Mul(a, b)
        }"""
    )
    model = load_onnx_text(tmp_path, text)
    record = _cse(model)
    assert _changes(record) == [
        (ChangeKind.REWIRED, "merge-initializers", ("n1",)),
        (ChangeKind.REMOVED_NODE, "cse", ("n1",)),
    ]
    assert record.changes[0].reason == (
        "initializer 'w2' equals 'w1' (FLOAT[3]); its readers now read 'w1' and it is removed"
    )
    assert list(model.graph.initializers) == ["w1"]
    assert _ops(model.graph) == ["Add", "Mul"]

    unmerged = load_onnx_text(tmp_path, text)
    assert not _cse(unmerged, CseConfig(max_initializer_elements=2)).modified


def test_a_duplicate_graph_output_hands_its_name_to_the_kept_value(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2] x) => (float[2] y, float[2] z) {
          a = Relu(x)
          y = Neg(a)
          z = Relu(x)
        }""",
    )
    record = _cse(model)
    assert _ops(model.graph) == ["Relu", "Neg"]
    assert [change.nodes for change in record.changes] == [("n2",)]
    assert [value.name for value in model.graph.outputs] == ["y", "z"]
    assert model.graph.outputs[1].producer() is model.graph.node(0)


def test_two_graph_outputs_are_not_merged(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER + "g (float[2] x) => (float[2] y, float[2] z) { y = Relu(x)  z = Relu(x) }",
    )
    record = _cse(model)
    assert not record.modified
    assert [(skip.rule, skip.nodes, skip.reason) for skip in record.skipped] == [
        (
            "cse",
            ("n1", "n0"),
            "not merged: output 'z' of node n1 (Relu) is a graph output and 'y' is already a "
            "graph output",
        )
    ]


def test_nondeterministic_nodes_are_not_merged(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2] x) => (float[2] y) {
          a = RandomNormal<shape = [2]>()
          b = RandomNormal<shape = [2]>()
          c = Add(a, b)
          y = Add(x, c)
        }""",
    )
    result = Cse()(model)
    assert not result.modified
    assert [skip.reason for skip in result.skipped] == [
        "not merged: node n1 (RandomNormal) is nondeterministic, so it may differ from its twin"
    ]


def test_nodes_with_subgraphs_are_not_merged_but_their_insides_are(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2] x, bool c) => (float[2] y) {
          a = If(c) <
            then_branch = t1 () => (float[2] r) { p = Relu(x)  q = Relu(x)  r = Add(p, q) },
            else_branch = e1 () => (float[2] s) { s = Neg(x) }
          >
          b = If(c) <
            then_branch = t2 () => (float[2] r2) { r2 = Neg(x) },
            else_branch = e2 () => (float[2] s2) { s2 = Relu(x) }
          >
          y = Add(a, b)
        }""",
    )
    record = _cse(model)
    assert [skip.reason for skip in record.skipped] == [
        "not merged: node n5 (If) has subgraphs, which cse does not compare"
    ]
    then_branch = model.graph.node(0).attributes["then_branch"].as_graph()
    assert _ops(then_branch) == ["Relu", "Add"]
    assert [change.nodes for change in record.changes] == [("n2",)]
