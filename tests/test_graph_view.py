"""The networkx view: exact nodes and edges, edge attributes, and outer-scope edges of subgraphs."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir as oir
from onnx import TensorProto, helper

from ir.graph_view import captured_values, to_networkx
from ir.model_io import load_model
from ir.node_ids import NODE_ID_KEY


def _load(tmp_path: Path, graph: onnx.GraphProto) -> oir.Model:
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return load_model(path)


def _diamond(tmp_path: Path) -> oir.Model:
    """x -> Relu -> {Neg, Exp} -> Add -> y; Mul reads x twice and feeds nothing."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"], name="top"),
            helper.make_node("Neg", ["a"], ["b"], name="left"),
            helper.make_node("Exp", ["a"], ["c"], name="right"),
            helper.make_node("Add", ["b", "c"], ["y"], name="bottom"),
            helper.make_node("Mul", ["x", "x"], ["sq"], name="square"),
        ],
        "diamond",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("sq", TensorProto.FLOAT, [2, 3]),
        ],
    )
    return _load(tmp_path, graph)


def test_diamond_nodes_and_edges_are_exact(tmp_path: Path) -> None:
    view = to_networkx(_diamond(tmp_path).graph)
    assert list(view.nodes) == ["n0", "n1", "n2", "n3", "n4"]
    assert sorted(view.edges(keys=True)) == [
        ("n0", "n1", "a"),
        ("n0", "n2", "a"),
        ("n1", "n3", "b"),
        ("n2", "n3", "c"),
    ]


def test_node_and_edge_attributes(tmp_path: Path) -> None:
    model = _diamond(tmp_path)
    view = to_networkx(model.graph)
    top = view.nodes["n0"]
    assert (top["op"], top["domain"], top["name"]) == ("Relu", "", "top")
    assert top["ir_node"] is model.graph[0]
    edge = view.edges["n1", "n3", "b"]
    assert edge["value"] is model.graph[1].outputs[0]
    assert edge["dtype"] == oir.DataType.FLOAT
    assert edge["shape"] == oir.Shape([2, 3])


def test_graph_inputs_are_not_nodes(tmp_path: Path) -> None:
    view = to_networkx(_diamond(tmp_path).graph)
    assert "x" not in view
    assert view.in_degree("n0") == 0
    assert view.in_degree("n4") == 0  # reads only the graph input x


def test_missing_ids_fall_back_to_positions(tmp_path: Path) -> None:
    model = _diamond(tmp_path)
    for node in model.graph:
        del node.metadata_props[NODE_ID_KEY]
    view = to_networkx(model.graph)
    assert list(view.nodes) == ["#0", "#1", "#2", "#3", "#4"]
    assert ("#1", "#3", "b") in view.edges(keys=True)


def test_duplicate_ids_keep_both_nodes(tmp_path: Path) -> None:
    model = _diamond(tmp_path)
    model.graph[2].metadata_props[NODE_ID_KEY] = "n1"
    view = to_networkx(model.graph)
    assert list(view.nodes) == ["n0", "n1", "#2", "n3", "n4"]
    assert ("#2", "n3", "c") in view.edges(keys=True)


def _if_model(tmp_path: Path) -> oir.Model:
    """An If whose branches read the outer value r (one of them from a nested If)."""
    inner = helper.make_graph(
        [helper.make_node("Neg", ["r"], ["deep"])],
        "inner",
        [],
        [helper.make_tensor_value_info("deep", TensorProto.FLOAT, [2])],
    )
    then_branch = helper.make_graph(
        [helper.make_node("Identity", ["r"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("If", ["cond"], ["e"], then_branch=inner, else_branch=inner)],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Not", ["flag"], ["cond"]),
            helper.make_node(
                "If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch
            ),
        ],
        "outer",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    return _load(tmp_path, graph)


def test_subgraph_reads_become_edges_into_the_owner(tmp_path: Path) -> None:
    model = _if_model(tmp_path)
    view = to_networkx(model.graph)
    assert list(view.nodes) == ["n0", "n1", "n2"]
    # the If reads cond directly and r only inside its branches
    assert sorted(view.edges(keys=True)) == [("n0", "n2", "r"), ("n1", "n2", "cond")]
    assert view.edges["n0", "n2", "r"]["value"] is model.graph[0].outputs[0]


def test_captured_values_cover_nested_subgraphs(tmp_path: Path) -> None:
    model = _if_model(tmp_path)
    outer_if = model.graph[2]
    # helper.make_node sorts attributes, so else_branch (with the nested If) comes first
    assert [value.name for value in captured_values(outer_if)] == ["cond", "r"]
    assert captured_values(model.graph[0]) == []


def test_view_of_a_subgraph_has_no_edges_from_outer_values(tmp_path: Path) -> None:
    model = _if_model(tmp_path)
    then_branch = model.graph[2].attributes["then_branch"].as_graph()
    view = to_networkx(then_branch)
    assert list(view.nodes) == ["n6"]  # ids follow all_nodes(): else_branch is walked first
    assert list(view.edges) == []
