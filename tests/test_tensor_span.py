"""`ir.tensor_span.nodes_between`: the nodes on paths between named tensors, not past an input,
without the nodes that read only constants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from bert_like import load
from onnx import TensorProto, helper, numpy_helper

from ir.node_ids import node_id
from ir.tensor_span import nodes_between


def _model(folder: Path) -> onnx.ModelProto:
    """x -> Relu(n0) -> a -> Neg(n1) -> b; Shape(w)(n2) -> s -> Cast(n3) -> c;
    Add(b, c)(n4) -> d; Add(d, x)(n5) -> y."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["a"], ["b"]),
        helper.make_node("Shape", ["w"], ["s"]),
        helper.make_node("Cast", ["s"], ["c"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["b", "c"], ["d"]),
        helper.make_node("Add", ["d", "x"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "span",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(np.zeros(4, np.float32), "w")],
    )
    return load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder)


def _ids(nodes: tuple) -> list[str]:
    return [node_id(node) for node in nodes]


def test_nodes_between_inputs_and_outputs(tmp_path: Path) -> None:
    graph = _model(tmp_path).graph
    assert _ids(nodes_between(graph, {"x"}, {"d"})) == ["n0", "n1", "n4"]
    assert _ids(nodes_between(graph, {"x"}, {"y"})) == ["n0", "n1", "n4", "n5"]


def test_nodes_between_stops_at_an_input_tensor(tmp_path: Path) -> None:
    graph = _model(tmp_path).graph
    assert _ids(nodes_between(graph, {"b", "x"}, {"y"})) == ["n4", "n5"]
    assert _ids(nodes_between(graph, {"x"}, {"b"})) == ["n0", "n1"]


def test_nodes_between_leaves_out_constant_only_nodes_and_unknown_names(tmp_path: Path) -> None:
    graph = _model(tmp_path).graph
    assert _ids(nodes_between(graph, {"a", "made-up"}, {"d", "other"})) == ["n1", "n4"]
    assert nodes_between(graph, {"c"}, {"s"}) == ()
