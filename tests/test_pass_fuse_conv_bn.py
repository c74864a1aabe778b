"""fuse-conv-bn: folded weights give the same outputs, and every unfoldable site says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.model_io import load_model
from ir.node_ids import provenance
from ir.reference import run_reference
from passes.audit import Change, ChangeKind
from passes.fusion.fuse_conv_bn import FuseConvBn
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline
from zoo.catalog import ZOO

FLOAT = TensorProto.FLOAT
CHANNELS = 6


def _bn_params(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {
        "scale": rng.standard_normal(shape).astype(np.float32),
        "beta": rng.standard_normal(shape).astype(np.float32),
        "mean": rng.standard_normal(shape).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, shape).astype(np.float32),
    }


def _model(
    tmp_path: Path,
    *,
    op: str = "Conv",
    group: int = 1,
    bias: bool = True,
    bn_attributes: dict | None = None,
    bn_outputs: tuple[str, ...] = ("y",),
    before: tuple[onnx.NodeProto, ...] = (),
    after: tuple[onnx.NodeProto, ...] = (),
    outputs: tuple[str, ...] = ("y",),
    opset: int = 17,
    param_shape: tuple[int, ...] = (CHANNELS,),
    not_initializers: tuple[str, ...] = (),
) -> ir.Model:
    """x[1,4,5,5] -> Conv or ConvTranspose (3x3, 6 output channels) -> BatchNormalization -> y,
    between the nodes `before` and `after`. A weight named in `not_initializers` is a graph input
    unless a node in `before` computes it."""
    rng = np.random.default_rng(0)
    weight_shape = (CHANNELS, 4 // group, 3, 3) if op == "Conv" else (4, CHANNELS // group, 3, 3)
    weights = {"w": rng.standard_normal(weight_shape).astype(np.float32)}
    if bias:
        weights["b"] = rng.standard_normal(CHANNELS).astype(np.float32)
    weights.update(_bn_params(rng, param_shape))
    conv_inputs = ["x", "w", "b"] if bias else ["x", "w"]
    nodes = [
        *before,
        helper.make_node(op, conv_inputs, ["c"], name="conv", pads=[1, 1, 1, 1], group=group),
        helper.make_node(
            "BatchNormalization",
            ["c", "scale", "beta", "mean", "var"],
            list(bn_outputs),
            name="bn",
            **(bn_attributes or {"epsilon": 1e-3}),
        ),
        *after,
    ]
    computed = {name for node in before for name in node.output}
    inputs = [helper.make_tensor_value_info("x", FLOAT, [1, 4, 5, 5])]
    inputs += [
        helper.make_tensor_value_info(name, FLOAT, list(weights[name].shape))
        for name in not_initializers
        if name not in computed
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn",
        inputs,
        [helper.make_tensor_value_info(name, FLOAT, None) for name in outputs],
        [
            numpy_helper.from_array(array, name)
            for name, array in weights.items()
            if name not in not_initializers
        ],
    )
    path = tmp_path / "conv_bn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return load_model(path)


def _ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def _feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((1, 4, 5, 5)).astype(np.float32)}


def _assert_same_outputs(model: ir.Model, before: list[np.ndarray]) -> None:
    for expected, got in zip(before, run_reference(model, _feeds()), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_conv_bn_becomes_one_conv_with_the_same_outputs(tmp_path: Path) -> None:
    model = _model(tmp_path)
    before = run_reference(model, _feeds())
    result = FuseConvBn()(model)
    assert result.modified
    assert _ops(model) == ["Conv"]
    reason = "BatchNormalization folded into the Conv's weights and bias"
    assert result.changes == (
        Change(ChangeKind.ADDED_NODE, ("n2",), "conv-bn", reason, replaces=("n0", "n1")),
        Change(ChangeKind.REMOVED_NODE, ("n0",), "conv-bn", reason),
        Change(ChangeKind.REMOVED_NODE, ("n1",), "conv-bn", reason),
    )
    assert result.skipped == ()
    (conv,) = model.graph
    assert provenance(conv)["replaces"] == ["n0", "n1"]
    assert conv.name == "conv" and conv.outputs[0].name == "y"
    assert conv.attributes["pads"].as_ints() == (1, 1, 1, 1)
    assert [value.name for value in conv.inputs] == ["x", "w_bn_folded", "w_bn_folded_bias"]
    _assert_same_outputs(model, before)


@pytest.mark.parametrize(
    ("op", "group", "bias"),
    [("Conv", 2, False), ("ConvTranspose", 1, True), ("ConvTranspose", 2, False)],
)
def test_grouped_and_transposed_convolutions_fold_per_output_channel(
    tmp_path: Path, op: str, group: int, bias: bool
) -> None:
    model = _model(tmp_path, op=op, group=group, bias=bias)
    before = run_reference(model, _feeds())
    assert FuseConvBn()(model).modified
    assert _ops(model) == [op]
    _assert_same_outputs(model, before)


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    model = _model(tmp_path)
    FuseConvBn()(model)
    again = FuseConvBn()(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def test_pipeline_records_numeric_drift(tmp_path: Path) -> None:
    model = _model(tmp_path)
    (record,) = run_pipeline(model, [FuseConvBn()], [VerifyAfterEachPass(), NumericCheck()]).records
    assert record.modified and record.rule_counts() == {"conv-bn": 1}
    (drift,) = record.numeric["vs_input"]
    assert drift["shape_match"] and drift["cosine"] >= 0.99999 and drift["max_rel"] < 1e-4


def test_batch_norm_after_another_op_is_not_a_site(tmp_path: Path) -> None:
    relu = helper.make_node("Relu", ["y"], ["r"])
    bn = helper.make_node("BatchNormalization", ["r", "scale", "beta", "mean", "var"], ["z"])
    model = _model(tmp_path, after=(relu, bn), outputs=("z",))
    result = FuseConvBn()(model)
    assert _ops(model) == ["Conv", "Relu", "BatchNormalization"]
    assert [change.replaces for change in result.changes if change.replaces] == [("n0", "n1")]
    assert result.skipped == ()


def _skip_reason(model: ir.Model) -> str:
    """The one skip of a pass that must not change the model."""
    ops = _ops(model)
    result = FuseConvBn()(model)
    assert not result.modified and _ops(model) == ops
    (skip,) = result.skipped
    assert skip.rule == "conv-bn" and skip.nodes == ("n0", "n1")
    return skip.reason


def test_skips_when_the_conv_output_has_another_reader(tmp_path: Path) -> None:
    relu = helper.make_node("Relu", ["c"], ["r"])
    model = _model(tmp_path, after=(relu,), outputs=("y", "r"))
    assert _skip_reason(model) == (
        "Conv+BatchNormalization not folded: Conv output has 2 consumers"
    )


def test_skips_when_the_conv_output_is_a_graph_output(tmp_path: Path) -> None:
    model = _model(tmp_path, outputs=("y", "c"))
    assert _skip_reason(model) == (
        "Conv+BatchNormalization not folded: Conv output is a graph output"
    )


def test_skips_batch_norm_in_training_mode(tmp_path: Path) -> None:
    model = _model(tmp_path, bn_attributes={"training_mode": 1}, opset=15)
    assert _skip_reason(model) == (
        "Conv+BatchNormalization not folded: BatchNormalization is in training mode"
    )


def test_skips_batch_norm_whose_statistics_outputs_are_used(tmp_path: Path) -> None:
    statistics = ("running_mean", "running_var", "saved_mean", "saved_var")
    model = _model(tmp_path, bn_outputs=("y", *statistics), outputs=("y", "running_mean"), opset=9)
    assert _skip_reason(model) == (
        "Conv+BatchNormalization not folded: "
        "BatchNormalization's running mean and variance outputs are used"
    )


def test_skips_weights_built_at_run_time_and_says_to_fold_constants(tmp_path: Path) -> None:
    shape = helper.make_node(
        "Constant",
        [],
        ["w_shape"],
        value=numpy_helper.from_array(np.array([CHANNELS, 4, 3, 3], np.int64)),
    )
    fill = helper.make_node(
        "ConstantOfShape", ["w_shape"], ["w"], value=helper.make_tensor("v", FLOAT, [1], [0.5])
    )
    model = _model(tmp_path, before=(shape, fill), not_initializers=("w",))
    result = FuseConvBn()(model)
    assert not result.modified
    (skip,) = result.skipped
    assert skip.nodes == ("n2", "n3")
    assert skip.reason == (
        "Conv+BatchNormalization not folded: Conv weight 'w' is computed by a ConstantOfShape "
        "node (run fold-constants first)"
    )


def test_skips_parameters_that_are_graph_inputs(tmp_path: Path) -> None:
    model = _model(tmp_path, not_initializers=("mean",))
    assert _skip_reason(model) == (
        "Conv+BatchNormalization not folded: BatchNormalization mean 'mean' is a graph input"
    )


def test_skips_per_position_statistics(tmp_path: Path) -> None:
    model = _model(tmp_path, bn_attributes={"spatial": 0}, opset=7, param_shape=(CHANNELS, 5, 5))
    assert _skip_reason(model) == (
        "Conv+BatchNormalization not folded: "
        "BatchNormalization scale has shape [6, 5, 5], expected [6]"
    )


def test_light_resnet50_folds_every_batch_norm_after_fold_constants(tmp_path: Path) -> None:
    """The zoo model's weights are ConstantOfShape fills; after folding them every BN goes."""
    proto = onnx.load(ZOO["onnx-light-resnet50"].file)
    # The softmax of fill weights is flat; the last feature map shows the numbers.
    proto.graph.output.append(onnx.ValueInfoProto(name="r171"))
    path = tmp_path / "resnet50.onnx"
    onnx.save(proto, path)
    model = load_model(path)
    feeds = {"gpu_0/data_0": np.random.default_rng(0).standard_normal((1, 3, 224, 224))}
    feeds = {name: array.astype(np.float32) for name, array in feeds.items()}
    before = run_reference(model, feeds)
    unfolded = FuseConvBn()(model)
    assert not unfolded.modified and len(unfolded.skipped) == 53
    assert "ConstantOfShape node (run fold-constants first)" in unfolded.skipped[0].reason

    records = run_pipeline(model, parse_pipeline("fold-constants,fuse-conv-bn")).records
    assert records[-1].rule_counts() == {"conv-bn": 53}
    assert records[-1].skipped == ()
    assert "BatchNormalization" not in _ops(model)
    assert _ops(model).count("Conv") == 53
    for expected, got in zip(before, run_reference(model, feeds), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
