"""fuse-conv-bn: folded weights give the same outputs, and every unfoldable site says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper, numpy_helper
from rewrite_cases import check_rewrite, check_skip

from ir.model_io import load_model
from ir.node_ids import provenance
from ir.reference import run_reference
from passes.audit import Change, ChangeKind, Skip
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


def _model(tmp_path: Path, *, op: str = "Conv", group: int = 1, bias: bool = True) -> oir.Model:
    """x[1,4,5,5] -> Conv or ConvTranspose (3x3, 6 output channels) -> BatchNormalization -> y,
    with random weights."""
    rng = np.random.default_rng(0)
    weight_shape = (CHANNELS, 4 // group, 3, 3) if op == "Conv" else (4, CHANNELS // group, 3, 3)
    weights = {"w": rng.standard_normal(weight_shape).astype(np.float32)}
    if bias:
        weights["b"] = rng.standard_normal(CHANNELS).astype(np.float32)
    weights.update(_bn_params(rng, (CHANNELS,)))
    conv_inputs = ["x", "w", "b"] if bias else ["x", "w"]
    nodes = [
        helper.make_node(op, conv_inputs, ["c"], name="conv", pads=[1, 1, 1, 1], group=group),
        helper.make_node(
            "BatchNormalization",
            ["c", "scale", "beta", "mean", "var"],
            ["y"],
            name="bn",
            epsilon=1e-3,
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn",
        [helper.make_tensor_value_info("x", FLOAT, [1, 4, 5, 5])],
        [helper.make_tensor_value_info("y", FLOAT, None)],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    path = tmp_path / "conv_bn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return load_model(path)


def _ops(model: oir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def _feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((1, 4, 5, 5)).astype(np.float32)}


def _assert_same_outputs(model: oir.Model, before: list[np.ndarray]) -> None:
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


def _text(
    *,
    conv: str = "c = Conv(x, w, b)",
    bn: str = "y = BatchNormalization <epsilon = 1.0> (c, scale, beta, mean, var)",
    body: str = "",
    weights: str = "float[2,2,1,1] w = {1, 2, 3, 4}, float[2] b = {1, 2}",
    statistics: str = (
        "float[2] scale = {2, 0.5}, float[2] beta = {0, 1}, float[2] mean = {0.5, 1}, "
        "float[2] var = {3, 0}"
    ),
    inputs: str = "float[1,2,1,1] x",
    outputs: str = "float[1,2,1,1] y",
    opset: int = 17,
) -> str:
    """ONNX text of x -> 1x1 Conv (n0) -> BatchNormalization (n1) -> y (then `body`). With
    epsilon 1 the BN's per-channel factor scale / sqrt(var + eps) is [1, 0.5]."""
    initializers = ", ".join(text for text in (weights, statistics) if text)
    return f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g ({inputs}) => ({outputs}) <{initializers}>
        {{
            {conv}
            {bn}
            {body}
        }}
    """


# W' = W * factor per output channel, b' = (b - mean) * factor + beta.
FOLDED = "float[2,2,1,1] w2 = {1, 2, 1.5, 2}, float[2] b2 = {0.5, 1.5}"


def test_conv_bn_becomes_one_conv_with_folded_weights(tmp_path: Path) -> None:
    expected = _text(conv="y = Conv(x, w2, b2)", bn="", weights=FOLDED, statistics="")
    check_rewrite(tmp_path, FuseConvBn(), _text(), expected)


def test_a_conv_without_bias_gets_one(tmp_path: Path) -> None:
    before = _text(conv="c = Conv(x, w)")
    folded = "float[2,2,1,1] w2 = {1, 2, 1.5, 2}, float[2] b2 = {-0.5, 0.5}"
    expected = _text(conv="y = Conv(x, w2, b2)", bn="", weights=folded, statistics="")
    check_rewrite(tmp_path, FuseConvBn(), before, expected)


def test_conv_transpose_scales_its_second_weight_axis(tmp_path: Path) -> None:
    """ConvTranspose weights are [Cin, Cout, ...]: the factor runs along axis 1."""
    before = _text(conv="c = ConvTranspose(x, w, b)")
    folded = "float[2,2,1,1] w2 = {1, 1, 3, 2}, float[2] b2 = {0.5, 1.5}"
    expected = _text(conv="y = ConvTranspose(x, w2, b2)", bn="", weights=folded, statistics="")
    check_rewrite(tmp_path, FuseConvBn(), before, expected)


def test_batch_norm_after_another_op_is_not_a_site(tmp_path: Path) -> None:
    second = "z = BatchNormalization(r, scale, beta, mean, var)"
    before = _text(body=f"r = Relu(y)\n {second}", outputs="float[1,2,1,1] z")
    expected = _text(
        conv="y = Conv(x, w2, b2)",
        bn="",
        body=f"r = Relu(y)\n {second}",
        weights=FOLDED,
        outputs="float[1,2,1,1] z",
    )
    result = check_rewrite(tmp_path, FuseConvBn(), before, expected)
    assert result.skipped == ()


def _skip(tmp_path: Path, before: str) -> Skip:
    """The one skip of a pass that must leave `before` as it is."""
    (skip,) = check_skip(tmp_path, FuseConvBn(), before)
    assert skip.rule == "conv-bn"
    return skip


TRAINING_BN = "y = BatchNormalization <training_mode = 1> (c, scale, beta, mean, var)"
BN_STATISTICS = "y, rm, rv, sm, sv = BatchNormalization <epsilon = 1.0> (c, scale, beta, mean, var)"
ONE_PER_POSITION = (
    "float[2,1,1] scale = {2, 0.5}, float[2,1,1] beta = {0, 1}, float[2,1,1] mean = {0.5, 1}, "
    "float[2,1,1] var = {3, 0}"
)
SKIPS = {
    "a conv output with another reader": (
        _text(body="r = Relu(c)", outputs="float[1,2,1,1] y, float[1,2,1,1] r"),
        "Conv output has 2 consumers",
    ),
    "a conv output that is a graph output": (
        _text(outputs="float[1,2,1,1] y, float[1,2,1,1] c"),
        "Conv output is a graph output",
    ),
    "batch norm in training mode": (
        _text(bn=TRAINING_BN, opset=15),
        "BatchNormalization is in training mode",
    ),
    "batch norm statistics in use": (
        _text(bn=BN_STATISTICS, outputs="float[1,2,1,1] y, float[2] rm", opset=9),
        "BatchNormalization's running mean and variance outputs are used",
    ),
    "a parameter that is a graph input": (
        _text(
            inputs="float[1,2,1,1] x, float[2] mean",
            statistics="float[2] scale = {2, 0.5}, float[2] beta = {0, 1}, float[2] var = {3, 0}",
        ),
        "BatchNormalization mean 'mean' is a graph input",
    ),
    "statistics per position": (
        _text(
            bn="y = BatchNormalization <spatial = 0> (c, scale, beta, mean, var)",
            statistics=ONE_PER_POSITION,
            opset=7,
        ),
        "BatchNormalization scale has shape [2, 1, 1], expected [2]",
    ),
}


@pytest.mark.parametrize("case", SKIPS)
def test_skips(tmp_path: Path, case: str) -> None:
    before, reason = SKIPS[case]
    skip = _skip(tmp_path, before)
    assert skip.nodes == ("n0", "n1")
    assert skip.reason == f"Conv+BatchNormalization not fused: {reason}"


def test_skips_weights_built_at_run_time_and_says_to_fold_constants(tmp_path: Path) -> None:
    fill = (
        "dims = Constant <value = int64[4] {2, 2, 1, 1}> ()\n"
        "w = ConstantOfShape <value = float[1] {0.5}> (dims)\n"
    )
    before = _text(conv=fill + "c = Conv(x, w, b)", weights="float[2] b = {1, 2}")
    skip = _skip(tmp_path, before)
    assert skip.nodes == ("n2", "n3")
    assert skip.reason == (
        "Conv+BatchNormalization not fused: Conv weight 'w' is computed by a ConstantOfShape "
        "node (run fold-constants first)"
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
