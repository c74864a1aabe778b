"""fuse-activation: Conv/Gemm + activation become onnxruntime's fused ops, which run on its CPU
provider with the same outputs; pairs the target cannot run are reported."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.model_io import load_model, save_model
from ir.node_ids import provenance
from ir.ops import node_cost
from ir.reference import run_reference
from passes.audit import Change, ChangeKind
from passes.fusion.fuse_activation import FuseActivation, FuseActivationConfig
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline

FLOAT = TensorProto.FLOAT
MS = "com.microsoft"
_INPUT_SHAPES = {"Conv": (1, 3, 6, 6), "Gemm": (2, 3)}


def _model(
    tmp_path: Path,
    anchor: str,
    activation: str,
    attributes: Mapping[str, object] | None = None,
    *,
    bounds: Mapping[str, np.ndarray | None] | None = None,
    domain: str = "",
    dtype: type[np.floating] = np.float32,
    opset: int = 17,
    after: tuple[onnx.NodeProto, ...] = (),
    outputs: tuple[str, ...] = ("y",),
) -> ir.Model:
    """x -> Conv (pads 1) or Gemm (transB, alpha 0.5, beta 2) as n0 -> the activation (n1) -> y,
    then the nodes `after`. `bounds` are extra activation inputs (Clip's min and max): an array
    is an initializer, None a graph input."""
    rng = np.random.default_rng(0)
    if anchor == "Conv":
        weights = {"w": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4)}
        anchor_node = helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1] * 4)
    else:
        weights = {"w": rng.standard_normal((5, 3)), "b": rng.standard_normal(5)}
        anchor_node = helper.make_node(
            "Gemm", ["x", "w", "b"], ["c"], name="gemm", transB=1, alpha=0.5, beta=2.0
        )
    weights = {name: array.astype(dtype) for name, array in weights.items()}
    bounds = bounds or {}
    weights.update({name: array for name, array in bounds.items() if array is not None})
    elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info("x", elem_type, _INPUT_SHAPES[anchor])]
    inputs += [
        helper.make_tensor_value_info(name, elem_type, [])
        for name, array in bounds.items()
        if array is None
    ]
    act = helper.make_node(
        activation, ["c", *bounds], ["y"], name="act", domain=domain, **(attributes or {})
    )
    graph = helper.make_graph(
        [anchor_node, act, *after],
        "anchor_activation",
        inputs,
        [helper.make_tensor_value_info(name, elem_type, None) for name in outputs],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if domain else [])
    path = tmp_path / "anchor_activation.onnx"
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return load_model(path)


def _ops(model: ir.Model) -> list[tuple[str, str]]:
    return [(node.op_type, node.domain) for node in model.graph]


def _fuse_and_compare(model: ir.Model) -> ir.Node:
    """Fuse the one pair, check that onnxruntime gives the same outputs, return the fused node."""
    x = model.graph.inputs[0]
    feeds = {x.name: np.random.default_rng(1).standard_normal(x.shape.dims).astype(np.float32)}
    before = run_reference(model, feeds)
    assert FuseActivation()(model).modified
    for expected, got in zip(before, run_reference(model, feeds), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    (fused,) = model.graph
    return fused


def test_conv_relu_becomes_fused_conv(tmp_path: Path) -> None:
    model = _model(tmp_path, "Conv", "Relu")
    assert MS not in model.opset_imports
    result = FuseActivation()(model)
    assert _ops(model) == [("FusedConv", MS)]
    assert model.opset_imports[MS] == 1
    reason = "Relu runs as the epilogue of onnxruntime's FusedConv"
    rule = "conv-activation"
    assert result.changes == (
        Change(ChangeKind.ADDED_NODE, ("n2",), rule, reason, replaces=("n0", "n1")),
        Change(ChangeKind.REMOVED_NODE, ("n0",), rule, reason),
        Change(ChangeKind.REMOVED_NODE, ("n1",), rule, reason),
    )
    (fused,) = model.graph
    assert provenance(fused)["replaces"] == ["n0", "n1"]
    assert fused.name == "conv" and fused.outputs[0].name == "y"
    assert [value.name for value in fused.inputs] == ["x", "w", "b"]
    assert fused.attributes["activation"].as_string() == "Relu"
    assert fused.attributes["pads"].as_ints() == (1, 1, 1, 1)
    assert "activation_params" not in fused.attributes


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
    FuseActivation()(model)
    again = FuseActivation()(model)
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
    FuseActivation()(model)
    reloaded = load_model(save_model(model, tmp_path / "fused.onnx"))
    (fused,) = reloaded.graph
    assert fused.outputs[0].shape == ir.Shape([2, 5])
    cost = node_cost(fused)
    # Gemm: 2*M*N*K + M*N for C, then Relu: 1 per output element
    assert cost is not None and cost.flops == 2 * 2 * 5 * 3 + 2 * 5 + 2 * 5


def _skip_reason(model: ir.Model, target: str = "onnxruntime") -> str:
    """The one skip of a pass that must not change the model."""
    ops = _ops(model)
    result = FuseActivation(FuseActivationConfig(target=target))(model)
    assert not result.modified and _ops(model) == ops
    (skip,) = result.skipped
    assert skip.nodes == ("n0", "n1")
    assert skip.rule == f"{ops[0][0].lower()}-activation"
    return skip.reason


@pytest.mark.parametrize(
    ("anchor", "activation", "domain", "opset", "fused"),
    [
        ("Conv", "Gelu", "", 20, "FusedConv"),
        ("Gemm", "Gelu", "", 20, "FusedGemm"),
        ("Gemm", "Gelu", MS, 17, "FusedGemm"),
        ("Gemm", "Clip", "", 17, "FusedGemm"),
        ("Gemm", "HardSwish", "", 17, "FusedGemm"),
        ("Conv", "Elu", "", 17, "FusedConv"),
    ],
)
def test_skips_activations_the_fused_op_lacks(
    tmp_path: Path, anchor: str, activation: str, domain: str, opset: int, fused: str
) -> None:
    model = _model(tmp_path, anchor, activation, domain=domain, opset=opset)
    assert _skip_reason(model) == (
        f"{anchor}+{activation} not fused: onnxruntime's {fused} has no {activation} epilogue"
    )


def test_skips_everything_for_a_target_without_epilogues(tmp_path: Path) -> None:
    model = _model(tmp_path, "Conv", "Relu")
    assert _skip_reason(model, target="tvm") == (
        "Conv+Relu not fused: target 'tvm' declares no fused epilogues"
    )


def test_skips_an_anchor_output_with_another_reader(tmp_path: Path) -> None:
    tanh = helper.make_node("Tanh", ["c"], ["t"])
    model = _model(tmp_path, "Conv", "Relu", after=(tanh,), outputs=("y", "t"))
    result = FuseActivation()(model)
    assert _ops(model) == [("Conv", ""), ("Relu", ""), ("Tanh", "")]
    reason = "Conv+{} not fused: Conv output has 2 consumers"
    assert [(skip.nodes, skip.reason) for skip in result.skipped] == [
        (("n0", "n1"), reason.format("Relu")),
        (("n0", "n2"), reason.format("Tanh")),
    ]


def test_skips_an_anchor_output_that_is_a_graph_output(tmp_path: Path) -> None:
    model = _model(tmp_path, "Gemm", "Relu", outputs=("y", "c"))
    assert _skip_reason(model) == "Gemm+Relu not fused: Gemm output is a graph output"


def test_skips_types_other_than_float32(tmp_path: Path) -> None:
    model = _model(tmp_path, "Gemm", "Relu", dtype=np.float64)
    assert _skip_reason(model) == (
        "Gemm+Relu not fused: onnxruntime's FusedGemm is only known to run float32; "
        "Gemm output is DOUBLE"
    )


def test_skips_clip_with_bounds_known_only_at_run_time(tmp_path: Path) -> None:
    model = _model(tmp_path, "Conv", "Clip", bounds={"lo": None, "hi": _F32(6.0)})
    assert _skip_reason(model) == "Conv+Clip not fused: Clip min 'lo' is a graph input"
