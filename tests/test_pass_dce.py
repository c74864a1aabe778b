"""dce: dead chains, dead subgraph owners (and what only they read), dead nodes inside live
subgraphs, unused initializers and opset imports, and every skip reason."""

from __future__ import annotations

from pathlib import Path

import onnx_ir as oir
from onnx_text import load_onnx_text

from ir.node_ids import NODE_ID_KEY
from passes.audit import ChangeKind, PassRecord
from passes.cleanup.dce import Dce, DceConfig
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def _dce(model: oir.Model, config: DceConfig | None = None) -> PassRecord:
    """Run the pass checked (IR verified, outputs compared with onnxruntime) and assert that
    the numbers did not move and that a second run changes nothing."""
    instruments = [VerifyAfterEachPass(), NumericCheck()]
    (record,) = run_pipeline(model, [Dce(config)], instruments).records
    if record.numeric is not None:
        assert all(drift["max_abs"] == 0 for drift in record.numeric["vs_input"])
    assert not Dce(config)(model).modified
    return record


def _ops(graph: oir.Graph) -> list[str]:
    return [node.op_type for node in graph]


def _changes(record: PassRecord) -> list[tuple[ChangeKind, str, tuple[str, ...]]]:
    return [(change.kind, change.rule, change.nodes) for change in record.changes]


def test_dead_chains_and_unused_initializers_go(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2] x) => (float[2] y) <float[2] w = {1, 2}, float[2] v = {3, 4}> {
          y = Relu(x)
          a = Add(x, w)
          b = Abs(a)
        }""",
    )
    record = _dce(model)
    assert _ops(model.graph) == ["Relu"]
    assert _changes(record) == [
        (ChangeKind.REMOVED_NODE, "dead-node", ("n2",)),
        (ChangeKind.REMOVED_NODE, "dead-node", ("n1",)),
        (ChangeKind.GRAPH_IO, "unused-initializer", ()),
        (ChangeKind.GRAPH_IO, "unused-initializer", ()),
    ]
    assert record.changes[0].reason == (
        "removed node n2 (Abs): none of its outputs is read or is a graph output"
    )
    assert record.changes[2].reason == (
        "removed initializer 'w' (FLOAT[2]): no node reads it and it is not a graph output"
    )
    assert not model.graph.initializers


def test_unused_initializer_that_is_a_graph_input_is_kept(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER + "g (float[2] x, float[2] w) => (float[2] y) <float[2] w = {1, 2}> { y = Relu(x) }",
    )
    record = _dce(model)
    assert not record.modified
    assert [(skip.rule, skip.nodes, skip.reason) for skip in record.skipped] == [
        (
            "unused-initializer",
            (),
            "kept initializer 'w': no node reads it, but it is the default of a graph input",
        )
    ]


def test_dead_subgraph_owner_releases_what_its_subgraphs_read(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2] x, bool c) => (float[2] y) {
          y = Relu(x)
          a = Neg(x)
          u = If(c) <
            then_branch = t () => (float[2] r) { r = Abs(a) },
            else_branch = e () => (float[2] s) { s = Identity(a) }
          >
        }""",
    )
    record = _dce(model)
    assert _ops(model.graph) == ["Relu"]
    assert [change.nodes for change in record.changes] == [("n2",), ("n1",)]
    assert record.changes[0].reason == (
        "removed node n2 (If), with the 2 nodes of its subgraphs: none of its outputs is read "
        "or is a graph output"
    )


def test_dead_nodes_inside_live_subgraphs_go(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        HEADER
        + """g (float[2] x, bool c) => (float[2] y) {
          a = Neg(x)
          y = If(c) <
            then_branch = t () => (float[2] r) { dead = Abs(a)  r = Relu(x) },
            else_branch = e () => (float[2] s) { s = Identity(x) }
          >
        }""",
    )
    record = _dce(model)
    assert _ops(model.graph) == ["If"]
    then_branch = model.graph.node(0).attributes["then_branch"].as_graph()
    assert _ops(then_branch) == ["Relu"]
    assert [change.nodes for change in record.changes] == [("n2",), ("n0",)]


def test_unused_opset_imports_go_unless_turned_off(tmp_path: Path) -> None:
    text = """<ir_version: 8, opset_import: ["" : 17, "ai.onnx.ml" : 3]>
    g (float[2] x) => (float[2] y) { y = Relu(x) }"""
    kept = load_onnx_text(tmp_path, text)
    assert not _dce(kept, DceConfig(opset_imports=False)).modified
    model = load_onnx_text(tmp_path, text)
    record = _dce(model)
    assert _changes(record) == [(ChangeKind.GRAPH_IO, "unused-opset-import", ())]
    assert record.changes[0].reason == (
        "removed the import of domain 'ai.onnx.ml' version 3: no node or function uses it"
    )
    assert dict(model.opset_imports) == {"": 17}


def test_nodes_without_outputs_are_kept(tmp_path: Path) -> None:
    model = load_onnx_text(tmp_path, HEADER + "g (float[2] x) => (float[2] y) { y = Relu(x) }")
    printer = oir.Node("com.example", "Print", [model.graph.inputs[0]], num_outputs=0, name="p")
    printer.metadata_props[NODE_ID_KEY] = "n1"
    model.graph.append(printer)
    result = Dce()(model)
    assert not result.modified
    assert [(skip.rule, skip.nodes, skip.reason) for skip in result.skipped] == [
        (
            "dead-node",
            ("n1",),
            "kept node n1 'p' (Print): it has no outputs, so it can only be there for a side "
            "effect",
        )
    ]
