"""The verifier: a clean model passes, each corruption is caught by its rule at the right node,
and the models shipped in the onnx wheel verify clean."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.errors import VerificationError
from ir.model_io import load_model
from ir.node_ids import NODE_ID_KEY, find_node
from ir.verifier import RULES, Violation, check, verify

FLOAT = TensorProto.FLOAT


def _load(tmp_path: Path, graph: onnx.GraphProto, name: str = "model.onnx") -> oir.Model:
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return load_model(path)


@pytest.fixture
def model(tmp_path: Path) -> oir.Model:
    """n0 Add, n1 Relu, n2 Clip (min only), n3 Split (2 outputs), n4 Concat (3 inputs), n5 Sigmoid.

    It covers optional inputs, variadic outputs and variadic inputs of the type rule.
    """
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "w"], ["a"], name="add"),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            helper.make_node("Clip", ["r", "lo", ""], ["c"], name="clip"),
            helper.make_node("Split", ["c", "halves"], ["s0", "s1"], name="split", axis=1),
            helper.make_node("Concat", ["s0", "s1", "s0"], ["cat"], name="concat", axis=1),
            helper.make_node("Sigmoid", ["cat"], ["y"], name="sigmoid"),
        ],
        "clean",
        [helper.make_tensor_value_info("x", FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 6])],
        initializer=[
            numpy_helper.from_array(np.ones((2, 4), np.float32), "w"),
            numpy_helper.from_array(np.array(0.5, np.float32), "lo"),
            numpy_helper.from_array(np.array([2, 2], np.int64), "halves"),
        ],
    )
    return _load(tmp_path, graph)


def _node(model: oir.Model, ident: str) -> oir.Node:
    node = find_node(model, ident)
    assert node is not None
    return node


def _found(model: oir.Model) -> list[tuple[str, str | None]]:
    return [(violation.rule, violation.node) for violation in verify(model)]


def _assert_check_names(model: oir.Model, ident: str) -> None:
    with pytest.raises(VerificationError) as raised:
        check(model)
    assert ident in str(raised.value)
    assert "\n" not in str(raised.value)


def test_clean_model_has_no_violations(model: oir.Model) -> None:
    assert verify(model) == []
    check(model)


def test_ssa_duplicate_name(model: oir.Model) -> None:
    _node(model, "n1").outputs[0].name = "a"  # Relu's output now has Add's output name
    assert _found(model) == [("ssa", "n1")]
    [violation] = verify(model)
    assert "'a'" in violation.message and "node n0 'add' (Add)" in violation.message
    _assert_check_names(model, "n1")


def test_ssa_output_with_another_producer(model: oir.Model) -> None:
    # The public API refuses to build this (Node() rejects outputs that already have a
    # producer), so only a bug or private access can cause it; the verifier still notices.
    relu, add = _node(model, "n1"), _node(model, "n0")
    relu.outputs[0]._producer = add
    assert _found(model) == [("ssa", "n1")]
    assert "producer is node n0 'add' (Add)" in verify(model)[0].message


def test_ssa_subgraph_output_shadowing_outer_name(tmp_path: Path) -> None:
    branch = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["r"])],  # r is also defined outside
        "branch",
        [],
        [helper.make_tensor_value_info("r", FLOAT, [2])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
        ],
        "outer",
        [
            helper.make_tensor_value_info("x", FLOAT, [2]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", FLOAT, [2])],
    )
    model = _load(tmp_path, graph)
    assert _found(model) == [("ssa", "n2"), ("ssa", "n3")]  # Neg in else, then Neg in then


def test_dangling_use_of_removed_node(model: oir.Model) -> None:
    model.graph.remove(_node(model, "n1"))  # Clip still reads the Relu's output
    assert _found(model) == [("dangling-use", "n2")]
    [violation] = verify(model)
    assert "'r'" in violation.message and "removed" in violation.message
    _assert_check_names(model, "n2")


def test_dangling_graph_output(model: oir.Model) -> None:
    model.graph.remove(_node(model, "n5"))
    assert _found(model) == [("dangling-use", None)]
    assert "'y'" in verify(model)[0].message


def test_dangling_use_inside_subgraph(tmp_path: Path) -> None:
    model = _if_model(tmp_path)
    model.graph.remove(_node(model, "n0"))  # the branches read its output r
    assert _found(model) == [("dangling-use", "n3"), ("dangling-use", "n4")]


def test_cycle(model: oir.Model) -> None:
    add, relu = _node(model, "n0"), _node(model, "n1")
    add.replace_input_with(0, relu.outputs[0])  # Add reads Relu, Relu reads Add
    assert _found(model) == [("cycle", "n0")]
    assert "n0 -> n1 -> n0" in verify(model)[0].message
    _assert_check_names(model, "n0")


def test_self_loop(model: oir.Model) -> None:
    relu = _node(model, "n1")
    relu.replace_input_with(0, relu.outputs[0])
    assert _found(model) == [("cycle", "n1")]
    assert "n1 -> n1" in verify(model)[0].message


def test_topological_order(model: oir.Model) -> None:
    sigmoid, concat = _node(model, "n5"), _node(model, "n4")
    model.graph.remove(sigmoid)
    model.graph.insert_before(concat, sigmoid)  # Sigmoid now runs before its input exists
    assert _found(model) == [("topological-order", "n5")]
    assert "'cat'" in verify(model)[0].message
    _assert_check_names(model, "n5")


def test_topological_order_through_subgraph(tmp_path: Path) -> None:
    model = _if_model(tmp_path)
    relu, owner = _node(model, "n0"), _node(model, "n2")
    model.graph.remove(relu)
    model.graph.insert_after(owner, relu)  # the If's branches read r before Relu defines it
    assert _found(model) == [("topological-order", "n2")]
    assert "inside its subgraph" in verify(model)[0].message


def test_type_mismatch_between_inputs(model: oir.Model) -> None:
    add = _node(model, "n0")
    add.inputs[0].dtype = oir.DataType.INT64  # x: INT64 against w: FLOAT
    assert _found(model) == [("type-mismatch", "n0")]
    message = verify(model)[0].message
    assert "'x'" in message and "tensor(int64)" in message and "tensor(float)" in message
    _assert_check_names(model, "n0")


def test_type_not_allowed_and_variadic_input(model: oir.Model) -> None:
    _node(model, "n4").outputs[0].dtype = oir.DataType.STRING
    # Concat allows strings but its output no longer matches its inputs; Sigmoid forbids them
    assert _found(model) == [("type-mismatch", "n4"), ("type-mismatch", "n5")]
    assert "does not allow" in verify(model)[1].message


def test_type_mismatch_in_variadic_outputs(model: oir.Model) -> None:
    _node(model, "n3").outputs[1].dtype = oir.DataType.DOUBLE
    assert _found(model) == [("type-mismatch", "n3"), ("type-mismatch", "n4")]


def test_type_mismatch_on_optional_input_and_initializer(model: oir.Model) -> None:
    model.graph.initializers["lo"].dtype = oir.DataType.DOUBLE
    assert _found(model) == [("type-mismatch", None), ("type-mismatch", "n2")]
    assert "initializer 'lo'" in verify(model)[0].message


def test_initializer_shape_mismatch(model: oir.Model) -> None:
    model.graph.initializers["w"].shape = oir.Shape([4, 2])
    assert _found(model) == [("type-mismatch", None)]


def test_unknown_dtypes_are_skipped(model: oir.Model) -> None:
    for node in model.graph:
        for value in node.outputs:
            value.type = None
    assert verify(model) == []


def test_duplicate_id(model: oir.Model) -> None:
    _node(model, "n5").metadata_props[NODE_ID_KEY] = "n1"
    assert _found(model) == [("duplicate-id", "n1")]
    assert "'sigmoid'" in verify(model)[0].message
    _assert_check_names(model, "n1")


def test_violations_are_ordered_by_rule_and_check_counts_the_rest(model: oir.Model) -> None:
    _node(model, "n0").inputs[0].dtype = oir.DataType.INT64
    _node(model, "n5").metadata_props[NODE_ID_KEY] = "n1"
    assert [rule for rule, _ in _found(model)] == ["duplicate-id", "type-mismatch"]
    with pytest.raises(VerificationError, match=r"^duplicate-id: .*n1.* \(and 1 more\)$"):
        check(model)


def test_violation_to_json() -> None:
    violation = Violation("cycle", "n3", "node n3 (Relu) is on a dependency cycle: n3 -> n3")
    assert violation.to_json() == {
        "rule": "cycle",
        "node": "n3",
        "message": "node n3 (Relu) is on a dependency cycle: n3 -> n3",
    }
    assert RULES[0] == "duplicate-id"


def _if_model(tmp_path: Path) -> oir.Model:
    """n0 Relu -> r; n1 If whose branches n3 (else) and n4 (then) read r from the outer graph."""
    branches = {
        name: helper.make_graph(
            [helper.make_node(op, ["r"], [f"{name}_out"])],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_out", FLOAT, [2])],
        )
        for name, op in (("then", "Identity"), ("else", "Neg"))
    }
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Not", ["flag"], ["c"]),
            helper.make_node(
                "If", ["c"], ["y"], then_branch=branches["then"], else_branch=branches["else"]
            ),
        ],
        "outer",
        [
            helper.make_tensor_value_info("x", FLOAT, [2]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", FLOAT, [2])],
    )
    return _load(tmp_path, graph)


def test_clean_if_model(tmp_path: Path) -> None:
    assert verify(_if_model(tmp_path)) == []


def test_sequence_typed_as_tensor(tmp_path: Path) -> None:
    # onnx_ir's ShapeInferencePass copies inferred types with `value.dtype = ...`, which turns a
    # sequence into Tensor(<element type>); a loader that used it produced exactly this IR.
    graph = helper.make_graph(
        [
            helper.make_node("SequenceConstruct", ["x", "x"], ["seq"]),
            helper.make_node("SequenceLength", ["seq"], ["n"]),
        ],
        "sequences",
        [helper.make_tensor_value_info("x", FLOAT, [2])],
        [helper.make_tensor_value_info("n", TensorProto.INT64, [])],
    )
    model = _load(tmp_path, graph)
    sequence = model.graph[0].outputs[0]
    assert isinstance(sequence.type, oir.SequenceType)
    assert verify(model) == []
    sequence.type = oir.TensorType(oir.DataType.FLOAT)
    assert _found(model) == [("type-mismatch", "n0"), ("type-mismatch", "n1")]
    assert (
        "tensor(float), which SequenceLength (opset 17) does not allow" in verify(model)[1].message
    )


def test_a_thousand_nodes_verify_quickly(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["v0"], ["v1"])]
    for index in range(1, 1000):
        op = "Add" if index % 2 else "Relu"
        inputs = [f"v{index}", "v0"] if op == "Add" else [f"v{index}"]
        nodes.append(helper.make_node(op, inputs, [f"v{index + 1}"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("v0", FLOAT, [8])],
        [helper.make_tensor_value_info("v1000", FLOAT, [8])],
    )
    model = _load(tmp_path, graph)
    started = time.perf_counter()
    assert verify(model) == []
    assert time.perf_counter() - started < 1.0


_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
_BACKEND_MODELS = sorted(
    path
    for folder in ("light", "simple", "pytorch-converted", "pytorch-operator")
    for pattern in ("*/model.onnx", "light_*.onnx")
    for path in (_DATA / folder).glob(pattern)
)


def _model_name(path: Path) -> str:
    return str(path.relative_to(_DATA).parent if path.name == "model.onnx" else path.stem)


def test_backend_models_were_found() -> None:
    assert len(_BACKEND_MODELS) > 100


@pytest.mark.parametrize("path", _BACKEND_MODELS, ids=_model_name)
def test_backend_model_verifies_clean(path: Path) -> None:
    assert [violation.to_json() for violation in verify(load_model(path))] == []
