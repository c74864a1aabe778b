"""The fingerprint names exactly the IR's content: every weight, attribute and op counts; node
ids and how the weights are stored do not; and it is the same in every process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.fingerprint import fingerprint
from ir.model_io import load_model, save_model
from ir.node_ids import NODE_ID_KEY

WEIGHTS = ("conv_w", "conv_b", "gemm_w", "gemm_b")


def _fingerprint_of(proto: onnx.ModelProto, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, path)
    return fingerprint(load_model(path))


def _edited(proto: onnx.ModelProto, edit: Callable[[onnx.ModelProto], None]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    edit(copy)
    return copy


def _node(proto: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(node for node in proto.graph.node if node.name == name)


def _attribute(proto: onnx.ModelProto, node: str, attribute: str) -> onnx.AttributeProto:
    return next(a for a in _node(proto, node).attribute if a.name == attribute)


def test_format(small_model_path: Path) -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fingerprint(load_model(small_model_path)))


def test_same_for_two_loads(small_model_path: Path) -> None:
    assert fingerprint(load_model(small_model_path)) == fingerprint(load_model(small_model_path))


def test_same_in_separate_processes(small_model_path: Path) -> None:
    """Two fresh interpreters with different hash seeds agree with this one."""
    script = "import sys; from ir.fingerprint import fingerprint; "
    script += "from ir.model_io import load_model; print(fingerprint(load_model(sys.argv[1])))"
    seen = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script, str(small_model_path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        seen.add(result.stdout.strip())
    assert seen == {fingerprint(load_model(small_model_path))}


@pytest.mark.parametrize("weight", WEIGHTS)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_changes_with_any_single_weight_value(
    small_model_proto: onnx.ModelProto, tmp_path: Path, weight: str, where: str
) -> None:
    """One element moved by one ulp, in each weight, at either end and in the middle."""

    def nudge(proto: onnx.ModelProto) -> None:
        tensor = next(t for t in proto.graph.initializer if t.name == weight)
        values = numpy_helper.to_array(tensor).copy()
        flat = values.reshape(-1)
        index = {"first": 0, "middle": flat.size // 2, "last": flat.size - 1}[where]
        flat[index] = np.nextafter(flat[index], np.float32(np.inf))
        tensor.CopyFrom(numpy_helper.from_array(values, weight))

    base = _fingerprint_of(small_model_proto, tmp_path / "base.onnx")
    changed = _fingerprint_of(_edited(small_model_proto, nudge), tmp_path / "changed.onnx")
    assert changed != base


@pytest.mark.parametrize(
    ("node", "attribute", "value"),
    [("conv", "strides", [2, 2]), ("gemm", "alpha", 0.5), ("gemm", "transB", 0)],
)
def test_changes_with_an_attribute(
    small_model_proto: onnx.ModelProto, tmp_path: Path, node: str, attribute: str, value: object
) -> None:
    def change(proto: onnx.ModelProto) -> None:
        _attribute(proto, node, attribute).CopyFrom(helper.make_attribute(attribute, value))

    base = _fingerprint_of(small_model_proto, tmp_path / "base.onnx")
    changed = _fingerprint_of(_edited(small_model_proto, change), tmp_path / "changed.onnx")
    assert changed != base


def test_changes_with_an_op(small_model_proto: onnx.ModelProto, tmp_path: Path) -> None:
    def swap(proto: onnx.ModelProto) -> None:
        _node(proto, "relu").op_type = "Sigmoid"

    base = _fingerprint_of(small_model_proto, tmp_path / "base.onnx")
    changed = _fingerprint_of(_edited(small_model_proto, swap), tmp_path / "changed.onnx")
    assert changed != base


def test_ignores_node_ids(small_model_path: Path, tmp_path: Path) -> None:
    model = load_model(small_model_path)
    base = fingerprint(model)
    for number, node in enumerate(model.graph):
        node.metadata_props[NODE_ID_KEY] = f"n{100 + 7 * number}"
    assert fingerprint(model) == base
    saved = save_model(model, tmp_path / "renumbered.onnx")
    assert load_model(saved).graph.node(0).metadata_props[NODE_ID_KEY] == "n100"
    assert fingerprint(load_model(saved)) == base


def test_other_node_metadata_counts(small_model_path: Path) -> None:
    """Only the id key is history; any other metadata is content."""
    model = load_model(small_model_path)
    base = fingerprint(model)
    model.graph.node(0).metadata_props["note"] = "tuned"
    assert fingerprint(model) != base


def test_same_for_embedded_and_external_storage(small_model_path: Path, tmp_path: Path) -> None:
    external = save_model(load_model(small_model_path), tmp_path / "ext.onnx", external_data=True)
    assert external.with_name("ext.onnx.data").stat().st_size > 0
    assert fingerprint(load_model(external)) == fingerprint(load_model(small_model_path))


def test_string_weights_hash_element_by_element(tmp_path: Path) -> None:
    """String tensors have no `tobytes`; ["ab", "c"] and ["a", "bc"] must still differ."""

    def model(strings: list[str]) -> onnx.ModelProto:
        table = helper.make_tensor("table", TensorProto.STRING, [2], [s.encode() for s in strings])
        graph = helper.make_graph(
            [helper.make_node("Identity", ["table"], ["y"])],
            "strings",
            [],
            [helper.make_tensor_value_info("y", TensorProto.STRING, [2])],
            [table],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    first = _fingerprint_of(model(["ab", "c"]), tmp_path / "a.onnx")
    second = _fingerprint_of(model(["a", "bc"]), tmp_path / "b.onnx")
    assert first != second


def _if_model(then_offset: float) -> onnx.ModelProto:
    """y = If(cond, x + then_w, x - else_w), each branch holding its own initializer; the else
    branch ends in an empty-bodied nested If so subgraph order is not trivial."""
    vector = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [4]) for name in "yab"]
    then_w = numpy_helper.from_array(np.full(4, then_offset, np.float32), "then_w")
    else_w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "else_w")
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "then_w"], ["a"])], "then", [], [vector[1]], [then_w]
    )
    passthrough = helper.make_graph(
        [], "passthrough", [], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])]
    )
    negate = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["n"])],
        "negate",
        [],
        [helper.make_tensor_value_info("n", TensorProto.FLOAT, [4])],
    )
    else_branch = helper.make_graph(
        [
            helper.make_node("If", ["cond"], ["i"], then_branch=passthrough, else_branch=negate),
            helper.make_node("Sub", ["i", "else_w"], ["b"]),
        ],
        "else",
        [],
        [vector[2]],
        [else_w],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        "branches",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
        ],
        [vector[0]],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_subgraph_initializers(tmp_path: Path) -> None:
    base = _fingerprint_of(_if_model(1.0), tmp_path / "base.onnx")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", base)
    assert _fingerprint_of(_if_model(1.0), tmp_path / "again.onnx") == base
    one_ulp_more = float(np.nextafter(np.float32(1), np.float32(2)))
    assert _fingerprint_of(_if_model(one_ulp_more), tmp_path / "changed.onnx") != base
