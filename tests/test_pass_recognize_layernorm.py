"""recognize-layernorm: decomposed LayerNorm becomes LayerNormalization; every skip says why."""

from __future__ import annotations

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
from passes.fusion.recognize_layernorm import RecognizeLayerNorm, RecognizeLayerNormConfig

RNG = np.random.default_rng(0)
CONSTANTS = {
    "two": np.array(2.0, np.float32),
    "eps": np.array(1e-5, np.float32),
    "gamma": RNG.standard_normal(8).astype(np.float32),
    "beta": RNG.standard_normal(8).astype(np.float32),
    "axes": np.array([-1]),
}


def _node(op: str, inputs: list[str], output: str, **attributes: object) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], name=output, **attributes)


def _mean(value: str, output: str, opset: int, axes: list[int]) -> onnx.NodeProto:
    if opset >= 18:
        return _node("ReduceMean", [value, "axes"], output)
    return _node("ReduceMean", [value], output, axes=axes)


def _torch(opset: int = 14, axes: tuple[int, ...] = (-1,)) -> list[onnx.NodeProto]:
    """mean, Sub, Pow 2, mean, Add eps, Sqrt, Div, Mul gamma, Add beta: how torch exports it."""
    return [
        _mean("x", "mu", opset, list(axes)),
        _node("Sub", ["x", "mu"], "d"),
        _node("Pow", ["d", "two"], "sq"),
        _mean("sq", "var", opset, list(axes)),
        _node("Add", ["var", "eps"], "ve"),
        _node("Sqrt", ["ve"], "sd"),
        _node("Div", ["d", "sd"], "n"),
        _node("Mul", ["n", "gamma"], "g"),
        _node("Add", ["g", "beta"], "y"),
    ]


def _reciprocal_form() -> list[onnx.NodeProto]:
    """d * d, eps + var, Reciprocal then Mul, no gamma or beta."""
    return [
        _node("ReduceMean", ["x"], "mu", axes=[2]),
        _node("Sub", ["x", "mu"], "d"),
        _node("Mul", ["d", "d"], "sq"),
        _node("ReduceMean", ["sq"], "var", axes=[-1]),
        _node("Add", ["eps", "var"], "ve"),
        _node("Sqrt", ["ve"], "sd"),
        _node("Reciprocal", ["sd"], "r"),
        _node("Mul", ["r", "d"], "y"),
    ]


def _model(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    opset: int = 14,
    outputs: tuple[str, ...] = ("y",),
    inputs: dict[str, list[int]] | None = None,
    **changed: np.ndarray,
) -> ir.Model:
    constants = {**CONSTANTS, **changed}
    for name in inputs or {}:
        constants.pop(name, None)
    graph_inputs = {"x": [2, 4, 8], **(inputs or {})}
    return load(make_model(nodes, graph_inputs, outputs, constants, opset), tmp_path)


def _ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def _fused(model: ir.Model) -> ir.Node:
    (node,) = [node for node in model.graph if node.op_type == "LayerNormalization"]
    return node


@pytest.mark.parametrize("opset", [11, 14, 17, 18, 20])
def test_torch_form(tmp_path: Path, opset: int) -> None:
    model = _model(tmp_path, _torch(opset), opset)
    matched = sorted(node_id(node) for node in model.graph)
    before = outputs_of(model)
    result = RecognizeLayerNorm()(model)
    assert _ops(model) == ["LayerNormalization"]
    fused = _fused(model)
    assert [value.name for value in fused.inputs] == ["x", "gamma", "beta"]  # reused
    assert fused.attributes.get_int("axis") == -1
    assert fused.attributes.get_float("epsilon") == pytest.approx(1e-5)
    assert fused.outputs[0].name == "y"
    assert sorted(provenance(fused)["replaces"]) == matched
    assert [(c.kind, c.rule) for c in result.changes][:1] == [(ChangeKind.ADDED_NODE, "layernorm")]
    removed = sorted(c.nodes[0] for c in result.changes if c.kind == ChangeKind.REMOVED_NODE)
    assert removed == matched
    assert result.skipped == ()
    assert verify(model) == []
    assert_close(before, outputs_of(model))  # onnxruntime runs it below opset 17 too


def test_reciprocal_form_without_affine(tmp_path: Path) -> None:
    model = _model(tmp_path, _reciprocal_form())
    before = outputs_of(model)
    result = RecognizeLayerNorm()(model)
    assert _ops(model) == ["LayerNormalization"]
    scale, bias = (model.graph.initializers[v.name] for v in _fused(model).inputs[1:])
    np.testing.assert_array_equal(scale.const_value.numpy(), np.ones(8, np.float32))
    np.testing.assert_array_equal(bias.const_value.numpy(), np.zeros(8, np.float32))
    graph_edits = [c.reason for c in result.changes if c.kind == ChangeKind.GRAPH_IO]
    assert graph_edits == [
        f"added initializer '{scale.name}' (scale)",
        f"added initializer '{bias.name}' (bias)",
    ]
    assert verify(model) == []
    assert_close(before, outputs_of(model))


def test_two_trailing_axes_with_axes_input(tmp_path: Path) -> None:
    gamma = RNG.standard_normal((1, 4, 8)).astype(np.float32)  # leading 1 broadcasts
    model = _model(tmp_path, _torch(18), 18, axes=np.array([1, 2]), gamma=gamma)
    before = outputs_of(model)
    RecognizeLayerNorm()(model)
    fused = _fused(model)
    assert fused.attributes.get_int("axis") == -2
    scale, bias = (value.const_value.numpy() for value in fused.inputs[1:])
    np.testing.assert_array_equal(scale, gamma[0])  # without the leading 1
    np.testing.assert_array_equal(bias, np.broadcast_to(CONSTANTS["beta"], (4, 8)))
    assert_close(before, outputs_of(model))


def test_residual_add_after_scale_stays(tmp_path: Path) -> None:
    nodes = [*_torch()[:-1], _node("Add", ["g", "skip"], "y")]
    model = _model(tmp_path, nodes, inputs={"skip": [2, 4, 8]})
    before = outputs_of(model)
    RecognizeLayerNorm()(model)
    assert _ops(model) == ["LayerNormalization", "Add"]
    assert not _fused(model).inputs[2].const_value.numpy().any()  # zeros for the missing bias
    assert_close(before, outputs_of(model))


def test_idempotent(tmp_path: Path) -> None:
    model = _model(tmp_path, _torch())
    assert RecognizeLayerNorm()(model).modified
    again = RecognizeLayerNorm()(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def _skip_reasons(model: ir.Model, config: RecognizeLayerNormConfig | None = None) -> list[str]:
    before = _ops(model)
    result = RecognizeLayerNorm(config)(model)
    assert not result.modified
    assert _ops(model) == before
    return [skip.reason for skip in result.skipped]


def _replaced(index: int, node: onnx.NodeProto, opset: int = 14) -> list[onnx.NodeProto]:
    nodes = _torch(opset)
    nodes[index] = node
    return nodes


@pytest.mark.parametrize(
    ("nodes", "reason"),
    [
        (
            _replaced(0, _node("ReduceMean", ["x"], "mu", axes=[-1], keepdims=0)),
            "ReduceMean 'mu' drops the reduced axes",
        ),
        (
            _replaced(2, _node("Pow", ["d", "eps"], "sq")),
            "'d' is not squared by Pow(d, 2) or Mul(d, d)",
        ),
        (
            _replaced(3, _node("ReduceMax", ["sq"], "var", axes=[-1])),
            "the square of 'd' is not averaged by a ReduceMean",
        ),
        (
            _replaced(4, _node("Mul", ["var", "eps"], "ve")),
            "the variance is not passed through Add(eps) and Sqrt",
        ),
    ],
)
def test_skip_structure(tmp_path: Path, nodes: list[onnx.NodeProto], reason: str) -> None:
    model = _model(tmp_path, nodes, inputs={"x": [2, 8, 8]})
    assert _skip_reasons(model) == [reason]


def test_skip_no_axes(tmp_path: Path) -> None:
    nodes = _replaced(0, _node("ReduceMean", ["x"], "mu", noop_with_empty_axes=1), 18)
    assert _skip_reasons(_model(tmp_path, nodes, 18)) == [
        "ReduceMean reduces no axes or all axes of unknown rank"
    ]


def test_skip_axes_not_constant(tmp_path: Path) -> None:
    nodes = [_node("Identity", ["axes"], "computed"), *_torch(18)]
    nodes[1] = _node("ReduceMean", ["x", "computed"], "mu")
    assert _skip_reasons(_model(tmp_path, nodes, 18)) == [
        "ReduceMean axes 'computed' are not constant"
    ]


def test_skip_epsilon_not_scalar(tmp_path: Path) -> None:
    model = _model(tmp_path, _torch(), eps=np.full(8, 1e-5, np.float32))
    assert _skip_reasons(model) == ["epsilon 'eps' is not a scalar"]


def test_all_axes_of_known_rank(tmp_path: Path) -> None:
    nodes = _replaced(0, _node("ReduceMean", ["x"], "mu"))
    nodes[3] = _node("ReduceMean", ["sq"], "var")
    gamma = RNG.standard_normal((2, 4, 8)).astype(np.float32)
    model = _model(tmp_path, nodes, gamma=gamma)
    before = outputs_of(model)
    RecognizeLayerNorm()(model)
    assert _fused(model).attributes.get_int("axis") == -3
    assert_close(before, outputs_of(model))


def test_skip_not_last_axis(tmp_path: Path) -> None:
    model = _model(tmp_path, _torch(axes=(1,)))
    assert _skip_reasons(model) == ["ReduceMean averages axes (-2,), not the last axes"]


def test_skip_variance_over_other_axes(tmp_path: Path) -> None:
    nodes = _torch()
    nodes[3] = _node("ReduceMean", ["sq"], "var", axes=[-2, -1])
    assert _skip_reasons(_model(tmp_path, nodes)) == [
        "the mean and the variance reduce different axes"
    ]


def test_skip_epsilon_not_constant(tmp_path: Path) -> None:
    model = _model(tmp_path, _torch(), inputs={"eps": []})
    assert _skip_reasons(model) == ["epsilon 'eps' is a graph input"]


def test_skip_scale_not_constant(tmp_path: Path) -> None:
    model = _model(tmp_path, _torch(), inputs={"gamma": [8]})
    assert _skip_reasons(model) == ["scale 'gamma' is a graph input"]


def test_skip_scale_varies_along_leading_axes(tmp_path: Path) -> None:
    model = _model(tmp_path, _torch(), gamma=np.ones((4, 8), np.float32))
    assert _skip_reasons(model) == ["the scale does not match the normalized shape (8,)"]


def test_skip_intermediate_read_elsewhere(tmp_path: Path) -> None:
    model = _model(tmp_path, [*_torch(), _node("Relu", ["sd"], "z")], outputs=("y", "z"))
    relu = next(node for node in model.graph if node.op_type == "Relu")
    assert _skip_reasons(model) == [
        f"intermediate value 'sd' is also read by node {node_id(relu)} 'z' (Relu)"
    ]


def test_skip_intermediate_graph_output(tmp_path: Path) -> None:
    model = _model(tmp_path, _torch(), outputs=("y", "n"))
    assert _skip_reasons(model) == ["intermediate value 'n' is a graph output"]


def test_skip_dynamic_normalized_size(tmp_path: Path) -> None:
    model = _model(tmp_path, _reciprocal_form(), inputs={"x": [2, 4, "hidden"]})
    assert _skip_reasons(model) == ["the normalized axes of 'x' have no static size"]


def test_skip_not_divided_by_deviation(tmp_path: Path) -> None:
    nodes = [*_torch()[:6], _node("Div", ["sd", "d"], "y")]
    assert _skip_reasons(_model(tmp_path, nodes)) == [
        "'d' is not divided by the standard deviation"
    ]


def test_other_target_needs_opset_17(tmp_path: Path) -> None:
    config = RecognizeLayerNormConfig(target="openvino")
    assert _skip_reasons(_model(tmp_path, _torch()), config) == [
        "LayerNormalization needs opset 17 (model imports 14) and target 'openvino' does not "
        "run it earlier"
    ]
    model = _model(tmp_path, _torch(17), 17)
    assert RecognizeLayerNorm(config)(model).modified


@pytest.mark.parametrize("opset", [14, 20])
def test_bert_like(tmp_path: Path, opset: int) -> None:
    model = load(build_bert_like(opset), tmp_path)
    feeds = bert_like_feeds()
    before = outputs_of(model, feeds)
    result = RecognizeLayerNorm()(model)
    assert _ops(model).count("LayerNormalization") == 5  # embeddings + 2 per layer
    assert "ReduceMean" not in _ops(model)
    assert result.skipped == ()
    assert model.graph.outputs[0].name == "last_hidden_state"
    assert verify(model) == []
    assert_close(before, outputs_of(model, feeds))
