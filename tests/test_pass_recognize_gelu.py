"""recognize-gelu: every spelling of erf and tanh GELU becomes one op; every skip says why."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from bert_like import assert_close, bert_like_feeds, build_bert_like, load, make_model, outputs_of
from onnx import helper

from ir.node_ids import node_id, provenance
from ir.verifier import verify
from passes.audit import ChangeKind
from passes.fusion.recognize_gelu import RecognizeGelu, RecognizeGeluConfig
from passes.pipeline import parse_pipeline

ROOT2 = np.array(math.sqrt(2.0), np.float32)
CONSTANTS = {
    "root2": ROOT2,
    "inv_root2": np.array(math.sqrt(0.5), np.float32),
    "one": np.array(1.0, np.float32),
    "half": np.array(0.5, np.float32),
    "three": np.array(3.0, np.float32),
    "cubic": np.array(0.044715, np.float32),
    "k": np.array(math.sqrt(2.0 / math.pi), np.float32),
}


def _node(op: str, inputs: list[str], output: str) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], name=output)


# Each variant: nodes computing y from x, named by their outputs.
VARIANTS = {
    "erf-torch": [  # (x * (1 + erf(x / sqrt2))) * 0.5
        _node("Div", ["x", "root2"], "s"),
        _node("Erf", ["s"], "e"),
        _node("Add", ["e", "one"], "a"),
        _node("Mul", ["x", "a"], "m"),
        _node("Mul", ["m", "half"], "y"),
    ],
    "erf-half-x": [  # (x * 0.5) * (1 + erf(x * (1/sqrt2)))
        _node("Mul", ["x", "half"], "h"),
        _node("Mul", ["inv_root2", "x"], "s"),
        _node("Erf", ["s"], "e"),
        _node("Add", ["one", "e"], "a"),
        _node("Mul", ["a", "h"], "y"),
    ],
    "erf-half-shift": [  # ((1 + erf(x / sqrt2)) * 0.5) * x
        _node("Div", ["x", "root2"], "s"),
        _node("Erf", ["s"], "e"),
        _node("Add", ["e", "one"], "a"),
        _node("Mul", ["half", "a"], "m"),
        _node("Mul", ["x", "m"], "y"),
    ],
    "tanh-pow": [  # (0.5 * x) * (1 + tanh(k * (x + 0.044715 * x^3)))
        _node("Pow", ["x", "three"], "p"),
        _node("Mul", ["cubic", "p"], "c"),
        _node("Add", ["x", "c"], "i"),
        _node("Mul", ["i", "k"], "s"),
        _node("Tanh", ["s"], "t"),
        _node("Add", ["one", "t"], "a"),
        _node("Mul", ["half", "x"], "h"),
        _node("Mul", ["h", "a"], "y"),
    ],
    "tanh-cube": [  # (x * (1 + tanh(k * (x * x * x * 0.044715 + x)))) * 0.5
        _node("Mul", ["x", "x"], "q"),
        _node("Mul", ["q", "x"], "p"),
        _node("Mul", ["p", "cubic"], "c"),
        _node("Add", ["c", "x"], "i"),
        _node("Mul", ["k", "i"], "s"),
        _node("Tanh", ["s"], "t"),
        _node("Add", ["t", "one"], "a"),
        _node("Mul", ["x", "a"], "m"),
        _node("Mul", ["half", "m"], "y"),
    ],
}


def _model(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    opset: int = 14,
    outputs: tuple[str, ...] = ("y",),
    **changed: np.ndarray,
) -> ir.Model:
    constants = {**CONSTANTS, **changed}
    return load(make_model(nodes, {"x": [2, 8]}, outputs, constants, opset), tmp_path)


def _ops(model: ir.Model) -> list[tuple[str, str]]:
    return [(node.domain, node.op_type) for node in model.graph]


def _with_reader(variant: str, value: str) -> list[onnx.NodeProto]:
    """The variant plus a Relu reading one of its intermediate values."""
    return [*VARIANTS[variant], _node("Relu", [value], "extra")]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("opset", [14, 20])
def test_each_spelling_becomes_one_op(tmp_path: Path, variant: str, opset: int) -> None:
    model = _model(tmp_path, VARIANTS[variant], opset)
    matched = [node_id(node) for node in model.graph]
    before = outputs_of(model)
    result = RecognizeGelu()(model)
    erf = variant.startswith("erf")
    if opset >= 20:
        assert _ops(model) == [("", "Gelu")]
        assert model.graph.node(0).attributes.get_string("approximate") == (
            "none" if erf else "tanh"
        )
        assert "com.microsoft" not in model.opset_imports
    else:
        assert _ops(model) == [("com.microsoft", "Gelu" if erf else "FastGelu")]
        assert model.opset_imports["com.microsoft"] == 1
    fused = model.graph.node(0)
    assert fused.outputs[0].name == "y"
    assert sorted(provenance(fused)["replaces"]) == matched
    rule = "gelu-erf" if erf else "gelu-tanh"
    added = [change for change in result.changes if change.kind == ChangeKind.ADDED_NODE]
    assert [(c.nodes, sorted(c.replaces), c.rule) for c in added] == [
        ((node_id(fused),), matched, rule)
    ]
    removed = [c.nodes[0] for c in result.changes if c.kind == ChangeKind.REMOVED_NODE]
    assert sorted(removed) == matched
    assert result.skipped == ()
    assert verify(model) == []
    assert_close(before, outputs_of(model))


def test_idempotent(tmp_path: Path) -> None:
    model = _model(tmp_path, VARIANTS["erf-torch"])
    assert RecognizeGelu()(model).modified
    again = RecognizeGelu()(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def test_result_feeds_the_old_readers(tmp_path: Path) -> None:
    model = _model(tmp_path, [*VARIANTS["tanh-pow"], _node("Relu", ["y"], "r")], outputs=("r",))
    before = outputs_of(model)
    RecognizeGelu()(model)
    assert _ops(model) == [("com.microsoft", "FastGelu"), ("", "Relu")]
    assert_close(before, outputs_of(model))


def _skip_reasons(model: ir.Model, config: RecognizeGeluConfig | None = None) -> list[str]:
    before = _ops(model)
    result = RecognizeGelu(config)(model)
    assert not result.modified
    assert _ops(model) == before
    return [skip.reason for skip in result.skipped]


@pytest.mark.parametrize(
    ("variant", "constant", "value", "reason"),
    [
        ("erf-torch", "root2", 1.5, "the Erf divisor is 1.5, not 1.41421"),
        ("erf-half-x", "inv_root2", 0.6, "the Erf input scale is 0.6, not 0.707107"),
        ("erf-torch", "one", 2.0, "the constant added to Erf is 2, not 1"),
        ("erf-torch", "half", 0.6, "the GELU factor is 0.6, not 0.5"),
        ("erf-half-x", "half", 0.6, "the GELU factor is 0.6, not 0.5"),
        ("tanh-pow", "k", 0.7, "the Tanh input scale is 0.7, not 0.797885"),
        ("tanh-cube", "cubic", 0.05, "the cubic coefficient is 0.05, not 0.044715"),
    ],
)
def test_skip_constant_off(
    tmp_path: Path, variant: str, constant: str, value: float, reason: str
) -> None:
    model = _model(tmp_path, VARIANTS[variant], **{constant: np.array(value, np.float32)})
    assert _skip_reasons(model) == [reason]


def test_skip_divisor_not_constant(tmp_path: Path) -> None:
    nodes = [_node("Div", ["x", "w"], "s"), *VARIANTS["erf-torch"][1:]]
    model = load(make_model(nodes, {"x": [2, 8], "w": [2, 8]}, ["y"], CONSTANTS), tmp_path)
    assert _skip_reasons(model) == ["the Erf divisor is not a constant scalar"]


def test_constants_match_within_tolerance(tmp_path: Path) -> None:
    nearly = np.array(math.sqrt(2.0) * (1 + 5e-5), np.float32)
    model = _model(tmp_path, VARIANTS["erf-torch"], root2=nearly)
    assert RecognizeGelu()(model).modified
    off = _model(tmp_path, VARIANTS["erf-torch"], root2=nearly)
    assert _skip_reasons(off, RecognizeGeluConfig(tolerance=1e-5)) == [
        "the Erf divisor is 1.41428, not 1.41421"
    ]


def test_skip_intermediate_read_elsewhere(tmp_path: Path) -> None:
    model = _model(tmp_path, _with_reader("erf-torch", "e"), outputs=("y", "extra"))
    relu = next(node for node in model.graph if node.op_type == "Relu")
    assert _skip_reasons(model) == [
        f"intermediate value 'e' is also read by node {node_id(relu)} 'extra' (Relu)"
    ]


def test_skip_intermediate_graph_output(tmp_path: Path) -> None:
    model = _model(tmp_path, VARIANTS["tanh-cube"], outputs=("y", "i"))
    assert _skip_reasons(model) == ["intermediate value 'i' is a graph output"]


def test_skip_erf_not_of_scaled_input(tmp_path: Path) -> None:
    nodes = [
        _node("Erf", ["x"], "e"),
        _node("Add", ["e", "one"], "a"),
        _node("Mul", ["x", "a"], "m"),
        _node("Mul", ["m", "half"], "y"),
    ]
    assert _skip_reasons(_model(tmp_path, nodes)) == ["the Erf input is not x / sqrt(2)"]


def test_skip_tanh_not_of_gelu_polynomial(tmp_path: Path) -> None:
    nodes = [
        _node("Mul", ["x", "k"], "s"),
        _node("Tanh", ["s"], "t"),
        _node("Add", ["t", "one"], "a"),
        _node("Mul", ["x", "a"], "m"),
        _node("Mul", ["m", "half"], "y"),
    ]
    assert _skip_reasons(_model(tmp_path, nodes)) == [
        "the Tanh input is not sqrt(2/pi) * (x + 0.044715 * x^3)"
    ]


def test_skip_shift_not_multiplied_by_x(tmp_path: Path) -> None:
    nodes = [*VARIANTS["erf-torch"][:3], _node("Mul", ["a", "a"], "y")]
    assert _skip_reasons(_model(tmp_path, nodes)) == ["'a' is not multiplied by x and 0.5"]


def test_skip_product_not_halved(tmp_path: Path) -> None:
    nodes = [*VARIANTS["erf-torch"][:4], _node("Relu", ["m"], "y")]
    assert _skip_reasons(_model(tmp_path, nodes)) == ["'m' is not multiplied by 0.5"]


def test_skip_half_shift_not_multiplied_by_x(tmp_path: Path) -> None:
    nodes = [*VARIANTS["erf-half-shift"][:4], _node("Mul", ["m", "m"], "y")]
    assert _skip_reasons(_model(tmp_path, nodes)) == ["'m' is not multiplied by x"]


def test_plain_tanh_is_not_a_site(tmp_path: Path) -> None:
    model = _model(tmp_path, [_node("Tanh", ["x"], "y")])
    result = RecognizeGelu()(model)
    assert (result.modified, result.skipped) == (False, ())


def test_other_target_needs_opset_20(tmp_path: Path) -> None:
    config = RecognizeGeluConfig(target="tvm")
    model = _model(tmp_path, VARIANTS["erf-torch"])
    assert _skip_reasons(model, config) == [
        "ONNX Gelu needs opset 20 (model imports 14) and target 'tvm' has no com.microsoft GELU"
    ]
    model = _model(tmp_path, VARIANTS["erf-torch"], opset=20)
    RecognizeGelu(config)(model)
    assert _ops(model) == [("", "Gelu")]


def test_pipeline_options() -> None:
    (gelu,) = parse_pipeline("recognize-gelu{target=tvm tolerance=0.001}")
    assert gelu.config == RecognizeGeluConfig(target="tvm", tolerance=0.001)


@pytest.mark.parametrize(("opset", "form"), [(14, "erf"), (14, "tanh"), (20, "erf")])
def test_bert_like(tmp_path: Path, opset: int, form: str) -> None:
    model = load(build_bert_like(opset, gelu=form), tmp_path)
    feeds = bert_like_feeds()
    before = outputs_of(model, feeds)
    result = RecognizeGelu()(model)
    op = "Gelu" if form == "erf" or opset >= 20 else "FastGelu"
    assert sum(node.op_type == op for node in model.graph) == 2  # one per layer
    assert not any(node.op_type in ("Erf", "Tanh") for node in model.graph)
    assert result.skipped == ()
    assert verify(model) == []
    assert_close(before, outputs_of(model, feeds))
