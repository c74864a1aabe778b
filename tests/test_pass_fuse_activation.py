"""fuse-activation: Conv/Gemm + activation become the fused ops onnxruntime declares (the graph
before and the graph expected after), which run on its CPU provider with the same outputs; pairs
the target cannot run, and every site without a target, are reported."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper, numpy_helper
from rewrite_cases import check_rewrite, check_skip

from ir.model_io import load_model, save_model
from ir.node_ids import provenance
from ir.ops import node_cost
from ir.reference import run_reference
from passes.audit import Change, ChangeKind, Skip
from passes.fusion.fuse_activation import FuseActivation, FuseActivationConfig
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline

FLOAT = TensorProto.FLOAT
MS = "com.microsoft"
ONNXRUNTIME = FuseActivationConfig(target="onnxruntime")
_INPUT_SHAPES = {"Conv": (1, 3, 6, 6), "Gemm": (2, 3)}


def _model(
    tmp_path: Path,
    anchor: str,
    activation: str,
    attributes: Mapping[str, object] | None = None,
    *,
    bounds: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> oir.Model:
    """x -> Conv (pads 1) or Gemm (transB, alpha 0.5, beta 2) as n0 -> the activation (n1) -> y,
    with random weights. `bounds` are extra activation inputs (Clip's min and max)."""
    rng = np.random.default_rng(0)
    if anchor == "Conv":
        weights = {"w": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4)}
        anchor_node = helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1] * 4)
    else:
        weights = {"w": rng.standard_normal((5, 3)), "b": rng.standard_normal(5)}
        anchor_node = helper.make_node(
            "Gemm", ["x", "w", "b"], ["c"], name="gemm", transB=1, alpha=0.5, beta=2.0
        )
    weights = {name: array.astype(np.float32) for name, array in weights.items()}
    weights.update(bounds or {})
    act = helper.make_node(
        activation, ["c", *(bounds or {})], ["y"], name="act", **(attributes or {})
    )
    graph = helper.make_graph(
        [anchor_node, act],
        "anchor_activation",
        [helper.make_tensor_value_info("x", FLOAT, _INPUT_SHAPES[anchor])],
        [helper.make_tensor_value_info("y", FLOAT, None)],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    path = tmp_path / "anchor_activation.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return load_model(path)


def _fuse_and_compare(model: oir.Model) -> oir.Node:
    """Fuse the one pair, check that onnxruntime gives the same outputs, return the fused node."""
    x = model.graph.inputs[0]
    feeds = {x.name: np.random.default_rng(1).standard_normal(x.shape.dims).astype(np.float32)}
    before = run_reference(model, feeds)
    assert FuseActivation(ONNXRUNTIME)(model).modified
    for expected, got in zip(before, run_reference(model, feeds), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    (fused,) = model.graph
    return fused


def test_the_audit_records_the_fused_conv_replacing_both_nodes(tmp_path: Path) -> None:
    model = _model(tmp_path, "Conv", "Relu")
    result = FuseActivation(ONNXRUNTIME)(model)
    reason = "Relu runs as the epilogue of onnxruntime's FusedConv"
    rule = "conv-activation"
    assert result.changes == (
        Change(ChangeKind.GRAPH_IO, (), rule, "imported opset com.microsoft 1"),
        Change(ChangeKind.ADDED_NODE, ("n2",), rule, reason, replaces=("n0", "n1")),
        Change(ChangeKind.REMOVED_NODE, ("n0",), rule, reason),
        Change(ChangeKind.REMOVED_NODE, ("n1",), rule, reason),
    )
    (fused,) = model.graph
    assert provenance(fused)["replaces"] == ["n0", "n1"]
    assert fused.name == "conv" and fused.outputs[0].name == "y"


_F32 = np.float32


@pytest.mark.parametrize(
    ("activation", "attributes", "bounds", "opset", "params"),
    [
        ("Relu", None, None, 17, None),
        ("Sigmoid", None, None, 17, None),
        ("Tanh", None, None, 17, None),
        ("HardSwish", None, None, 17, None),
        ("LeakyRelu", {"alpha": 0.25}, None, 17, [0.25]),
        ("LeakyRelu", None, None, 17, [0.01]),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, None, 17, [0.3, 0.4]),
        ("Clip", None, {"lo": _F32(-0.5), "hi": _F32(0.5)}, 17, [-0.5, 0.5]),
        ("Clip", None, {"lo": _F32(0.0)}, 17, [0.0, float(np.finfo(_F32).max)]),
        ("Clip", {"min": 0.0, "max": 6.0}, None, 10, [0.0, 6.0]),
    ],
)
def test_conv_epilogues_run_on_onnxruntime(
    tmp_path: Path,
    activation: str,
    attributes: dict | None,
    bounds: dict | None,
    opset: int,
    params: list[float] | None,
) -> None:
    model = _model(tmp_path, "Conv", activation, attributes, bounds=bounds, opset=opset)
    fused = _fuse_and_compare(model)
    assert (fused.op_type, fused.domain) == ("FusedConv", MS)
    assert fused.attributes["activation"].as_string() == activation
    got = fused.attributes.get("activation_params")
    assert (None if got is None else list(got.as_floats())) == pytest.approx(params)


@pytest.mark.parametrize(
    ("activation", "attributes", "fused_attributes"),
    [
        ("Relu", None, {}),
        ("Sigmoid", None, {}),
        ("Tanh", None, {}),
        ("Softplus", None, {}),
        ("LeakyRelu", {"alpha": 0.25}, {"activation_alpha": 0.25}),
        (
            "HardSigmoid",
            {"alpha": 0.3, "beta": 0.4},
            {"activation_alpha": 0.3, "activation_beta": 0.4},
        ),
        ("Elu", None, {"activation_alpha": 1.0}),
    ],
)
def test_gemm_epilogues_run_on_onnxruntime(
    tmp_path: Path, activation: str, attributes: dict | None, fused_attributes: dict
) -> None:
    fused = _fuse_and_compare(_model(tmp_path, "Gemm", activation, attributes))
    assert (fused.op_type, fused.domain) == ("FusedGemm", MS)
    kept = {name: fused.attributes[name].value for name in ("alpha", "beta", "transB")}
    assert kept == {"alpha": 0.5, "beta": 2.0, "transB": 1}
    extra = {
        name: attr.value
        for name, attr in fused.attributes.items()
        if name.startswith("activation_")
    }
    assert extra == pytest.approx(fused_attributes)


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    model = _model(tmp_path, "Gemm", "Relu")
    FuseActivation(ONNXRUNTIME)(model)
    again = FuseActivation(ONNXRUNTIME)(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def test_pipeline_records_numeric_drift(tmp_path: Path) -> None:
    model = _model(tmp_path, "Conv", "LeakyRelu", {"alpha": 0.2})
    passes = parse_pipeline("fuse-activation{target=onnxruntime}")
    (record,) = run_pipeline(model, passes, [VerifyAfterEachPass(), NumericCheck()]).records
    assert record.config == {"target": "onnxruntime"}
    assert record.rule_counts() == {"conv-activation": 1}
    (drift,) = record.numeric["vs_input"]
    assert drift["shape_match"] and drift["cosine"] >= 0.99999 and drift["max_rel"] < 1e-4


def test_fused_gemm_survives_saving_and_has_a_cost(tmp_path: Path) -> None:
    """ONNX cannot shape-infer com.microsoft ops; the op table fills FusedGemm's output."""
    model = _model(tmp_path, "Gemm", "Relu")
    FuseActivation(ONNXRUNTIME)(model)
    reloaded = load_model(save_model(model, tmp_path / "fused.onnx"))
    (fused,) = reloaded.graph
    assert fused.outputs[0].shape == oir.Shape([2, 5])
    cost = node_cost(fused)
    # Gemm: 2*M*N*K + M*N for C, then Relu: 1 per output element
    assert cost is not None and cost.flops == 2 * 2 * 5 * 3 + 2 * 5 + 2 * 5


def _text(
    anchor: str = "c = Conv(x, w, b)",
    activation: str = "y = Relu(c)",
    *,
    inputs: str = "float[1,1,2,2] x",
    weights: str = "float[2,1,1,1] w = {1, -1}, float[2] b = {0.5, -0.5}",
    outputs: str = "float[1,2,2,2] y",
    opsets: str = '"" : 17',
) -> str:
    """ONNX text of x -> the anchor (n0, a 1x1 Conv) -> the activation (n1) -> y."""
    return f"""
        <ir_version: 8, opset_import: [{opsets}]>
        g ({inputs}) => ({outputs}) <{weights}>
        {{
            {anchor}
            {activation}
        }}
    """


def _gemm_text(anchor: str, activation: str, **kwargs: str) -> str:
    """ONNX text of x[2,3] -> the anchor (n0, a Gemm by w[2,3] transposed) -> the activation."""
    weights = "float[2,3] w = {1, 2, 3, 4, 5, 6}, float[2] b = {0.5, -0.5}"
    return _text(
        anchor, activation, inputs="float[2,3] x", weights=weights, outputs="float[2,2] y", **kwargs
    )


WITH_MS = '"" : 17, "com.microsoft" : 1'
GEMM = "c = Gemm <transB = 1, alpha = 0.5> (x, w, b)"
CLIP_BOUNDS = "float lo = {0.0}, float hi = {6.0}"


def test_conv_relu_becomes_fused_conv(tmp_path: Path) -> None:
    expected = _text(
        'y = com.microsoft.FusedConv <activation = "Relu"> (x, w, b)', "", opsets=WITH_MS
    )
    check_rewrite(tmp_path, FuseActivation(ONNXRUNTIME), _text(), expected)


def test_conv_clip_takes_its_bounds_as_activation_params(tmp_path: Path) -> None:
    weights = f"float[2,1,1,1] w = {{1, -1}}, float[2] b = {{0.5, -0.5}}, {CLIP_BOUNDS}"
    before = _text(activation="y = Clip(c, lo, hi)", weights=weights)
    fused = (
        'y = com.microsoft.FusedConv <activation = "Clip", activation_params = [0.0, 6.0]> '
        "(x, w, b)"
    )
    check_rewrite(tmp_path, FuseActivation(ONNXRUNTIME), before, _text(fused, "", opsets=WITH_MS))


def test_gemm_leaky_relu_becomes_fused_gemm_with_its_alpha(tmp_path: Path) -> None:
    before = _gemm_text(GEMM, "y = LeakyRelu <alpha = 0.25> (c)")
    fused = (
        'y = com.microsoft.FusedGemm <transB = 1, alpha = 0.5, activation = "LeakyRelu", '
        "activation_alpha = 0.25> (x, w, b)"
    )
    check_rewrite(
        tmp_path, FuseActivation(ONNXRUNTIME), before, _gemm_text(fused, "", opsets=WITH_MS)
    )


def _skip(tmp_path: Path, before: str, target: str = "onnxruntime") -> Skip:
    """The one skip of a pass that must leave `before` as it is."""
    (skip,) = check_skip(tmp_path, FuseActivation(FuseActivationConfig(target=target)), before)
    assert skip.nodes == ("n0", "n1")
    return skip


def test_without_a_target_nothing_is_fused_and_the_skip_says_why(tmp_path: Path) -> None:
    (skip,) = check_skip(tmp_path, FuseActivation(), _text())
    assert (skip.rule, skip.nodes) == ("conv-activation", ("n0", "n1"))
    assert skip.reason == (
        "Conv+Relu not fused: com.microsoft.FusedConv is not a standard ONNX op and no target "
        "is given (target=NAME)"
    )


def test_a_target_declaring_no_fused_op_is_a_skip(tmp_path: Path) -> None:
    assert _skip(tmp_path, _gemm_text(GEMM, "y = Relu(c)"), target="reference").reason == (
        "Gemm+Relu not fused: target 'reference' declares no com.microsoft.FusedGemm at opset 17"
    )


@pytest.mark.parametrize(
    ("before", "site", "fused"),
    [
        (_text(activation="y = Gelu(c)", opsets='"" : 20'), "Conv+Gelu", "FusedConv"),
        (_gemm_text(GEMM, "y = Gelu(c)", opsets='"" : 20'), "Gemm+Gelu", "FusedGemm"),
        (_gemm_text(GEMM, "y = com.microsoft.Gelu(c)", opsets=WITH_MS), "Gemm+Gelu", "FusedGemm"),
        (_gemm_text(GEMM, "y = Clip(c)"), "Gemm+Clip", "FusedGemm"),
        (_gemm_text(GEMM, "y = HardSwish(c)"), "Gemm+HardSwish", "FusedGemm"),
        (_text(activation="y = Elu(c)"), "Conv+Elu", "FusedConv"),
    ],
)
def test_skips_activations_the_fused_op_lacks(
    tmp_path: Path, before: str, site: str, fused: str
) -> None:
    anchor, activation = site.split("+")
    skip = _skip(tmp_path, before)
    assert skip.rule == f"{anchor.lower()}-activation"
    assert skip.reason == f"{site} not fused: onnxruntime's {fused} has no {activation} epilogue"


def test_skips_an_anchor_output_with_another_reader(tmp_path: Path) -> None:
    before = _text(
        activation="y = Relu(c)\n t = Tanh(c)", outputs="float[1,2,2,2] y, float[1,2,2,2] t"
    )
    skips = check_skip(tmp_path, FuseActivation(ONNXRUNTIME), before)
    reason = "Conv+{} not fused: Conv output has 2 consumers"
    assert [(skip.nodes, skip.reason) for skip in skips] == [
        (("n0", "n1"), reason.format("Relu")),
        (("n0", "n2"), reason.format("Tanh")),
    ]


def test_skips_an_anchor_output_that_is_a_graph_output(tmp_path: Path) -> None:
    before = _gemm_text(GEMM, "y = Relu(c)").replace("float[2,2] y", "float[2,2] y, float[2,2] c")
    assert _skip(tmp_path, before).reason == "Gemm+Relu not fused: Gemm output is a graph output"


def test_skips_types_other_than_float32(tmp_path: Path) -> None:
    before = _gemm_text(GEMM, "y = Relu(c)").replace("float", "double")
    assert _skip(tmp_path, before).reason == (
        "Gemm+Relu not fused: onnxruntime's FusedGemm is only known to run float32; "
        "Gemm output is DOUBLE"
    )


def test_skips_clip_with_bounds_known_only_at_run_time(tmp_path: Path) -> None:
    before = _text(activation="y = Clip(c, lo)", inputs="float[1,1,2,2] x, float lo")
    assert _skip(tmp_path, before).reason == "Conv+Clip not fused: Clip min 'lo' is a graph input"
