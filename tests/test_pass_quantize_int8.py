"""quantize-int8: exact QDQ structure, scales from the calibration data, onnxruntime's int8
kernels on the result, and one-line errors for bad configurations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.drift import output_drift
from ir.errors import AsicperfError
from ir.model_io import load_model
from ir.reference import run_reference
from ir.seeded_inputs import seeded_inputs
from passes.audit import Change, ChangeKind
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import PipelineError, parse_pipeline
from passes.precision.quantize_int8 import QuantizeInt8, QuantizeInt8Config

FLOAT = TensorProto.FLOAT


def _model(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list[int | str]],
    weights: dict[str, np.ndarray],
    outputs: tuple[str, ...] = ("y",),
    opset: int = 17,
) -> oir.Model:
    graph = helper.make_graph(
        nodes,
        "q",
        [helper.make_tensor_value_info(name, FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(name, FLOAT, None) for name in outputs],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    path = tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return load_model(path)


def _weights(*shapes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


def _matmul(tmp_path: Path, opset: int = 17) -> oir.Model:
    """x[2,4] @ w[4,3] -> y."""
    (w,) = _weights((4, 3))
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    return _model(tmp_path, [node], {"x": [2, 4]}, {"w": w}, opset=opset)


def _conv(tmp_path: Path) -> oir.Model:
    """x[1,2,5,5] -> Conv(w[3,2,3,3], b[3], pads 1) -> y."""
    w, b = _weights((3, 2, 3, 3), (3,))
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])
    return _model(tmp_path, [node], {"x": [1, 2, 5, 5]}, {"w": w, "b": b})


def _mlp(tmp_path: Path) -> oir.Model:
    """x[batch,4,16] -> MatMul -> Add -> Relu -> MatMul -> y, a transformer's FFN. (With a
    static batch onnxruntime first rewrites MatMul+Add into Reshape+Gemm+Reshape, and its QDQ
    selectors then leave that Gemm in float when an activation follows.)"""
    w1, b1, w2 = _weights((16, 32), (32,), (32, 10))
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    return _model(tmp_path, nodes, {"x": ["batch", 4, 16]}, {"w1": w1, "b1": b1, "w2": w2})


def _cnn(tmp_path: Path) -> oir.Model:
    """x[2,3,8,8] -> Conv -> Relu -> Conv(stride 2) -> Relu -> Flatten -> Gemm -> y[2,10]."""
    w1, b1, w2, g, gb = _weights((8, 3, 3, 3), (8,), (16, 8, 3, 3), (10, 256), (10,))
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1] * 4, strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", "g", "gb"], ["y"], transB=1),
    ]
    weights = {"w1": w1 * 0.3, "b1": b1, "w2": w2 * 0.2, "g": g * 0.1, "gb": gb}
    return _model(tmp_path, nodes, {"x": [2, 3, 8, 8]}, weights)


def _ops(model: oir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def _initializer(model: oir.Model, name: str) -> np.ndarray:
    return model.graph.initializers[name].const_value.numpy()


def _quantize(model: oir.Model, **options: object):
    return QuantizeInt8(QuantizeInt8Config(**options))(model)


def test_matmul_gets_qdq_activation_and_per_column_int8_weight(tmp_path: Path) -> None:
    model = _matmul(tmp_path)
    x = seeded_inputs(model, 0)["x"]
    w = _initializer(model, "w")
    result = _quantize(model, calibration="1")
    assert _ops(model) == ["QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "MatMul"]
    scale = float(np.abs(x).max()) / 127
    activation = (
        f"activation 'x' quantized per tensor to int8: scale={scale:.6g} zero_point=0 "
        f"(minmax observer: seen [{x.min():.6g}, {x.max():.6g}], "
        f"range [{-np.abs(x).max():.6g}, {np.abs(x).max():.6g}])"
    )
    weight_scales = np.abs(w).max(axis=0) / np.float32(127)
    weight = (
        "weight 'w' of node n0 'mm' (MatMul) stored as int8 per channel (axis 1: 3 scales in "
        f"[{weight_scales.min():.6g}, {weight_scales.max():.6g}], max|w|/127)"
    )
    assert result.changes == (
        Change(ChangeKind.ADDED_NODE, ("n1",), "activation", activation),
        Change(ChangeKind.ADDED_NODE, ("n2",), "activation", activation),
        Change(
            ChangeKind.REWIRED,
            ("n0",),
            "activation",
            "node n0 'mm' (MatMul) reads 'x' through Quantize/DequantizeLinear",
        ),
        Change(ChangeKind.ADDED_NODE, ("n3",), "weight", weight),
        Change(ChangeKind.REWIRED, ("n0",), "weight", weight),
    )
    assert result.skipped == ()
    quantize, _, dequantize_weight, matmul = model.graph
    assert quantize.inputs[0].name == "x"
    assert quantize.inputs[1].const_value.numpy() == np.float32(scale)
    assert quantize.inputs[2].const_value.numpy().dtype == np.int8
    assert dequantize_weight.attributes.get_int("axis") == 1
    np.testing.assert_array_equal(_initializer(model, "w_scale"), weight_scales)
    np.testing.assert_array_equal(
        _initializer(model, "w_int8"), np.round(w / weight_scales).astype(np.int8)
    )
    assert "w" not in model.graph.initializers  # the float weight is gone
    assert [value.name for value in matmul.inputs] == ["x_dq_n0", "w_dq"]


def test_asymmetric_activations_are_uint8_with_a_zero_point(tmp_path: Path) -> None:
    model = _matmul(tmp_path)
    x = seeded_inputs(model, 0)["x"]
    _quantize(model, calibration="1", activations="asymmetric")
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255
    zero_point = _initializer(model, "x_zero_point")
    assert zero_point.dtype == np.uint8 and int(zero_point) == round(-low / scale)
    assert _initializer(model, "x_scale") == np.float32(scale)


def test_conv_quantizes_its_output_and_stores_an_int32_bias(tmp_path: Path) -> None:
    model = _conv(tmp_path)
    b = _initializer(model, "b")
    result = _quantize(model, calibration="2")
    assert _ops(model) == [
        "QuantizeLinear",
        "DequantizeLinear",
        "DequantizeLinear",
        "DequantizeLinear",
        "Conv",
        "QuantizeLinear",
        "DequantizeLinear",
    ]
    *_, conv, _, output = model.graph
    assert output.outputs[0].name == "y" and output.outputs[0].is_graph_output()
    assert conv.outputs[0].name == "y_float"
    bias_scale = _initializer(model, "x_scale") * _initializer(model, "w_scale")
    np.testing.assert_array_equal(_initializer(model, "b_scale"), bias_scale.astype(np.float32))
    np.testing.assert_array_equal(_initializer(model, "b_int32"), np.round(b / bias_scale))
    assert _initializer(model, "b_int32").dtype == np.int32
    assert conv.inputs[2].producer().attributes.get_int("axis") == 0
    assert conv.inputs[1].producer().attributes.get_int("axis") == 0
    assert {change.rule for change in result.changes} == {"activation", "weight", "bias"}


def test_gemm_with_transposed_b_takes_axis_0(tmp_path: Path) -> None:
    model = _cnn(tmp_path)
    _quantize(model)
    gemm = next(node for node in model.graph if node.op_type == "Gemm")
    assert gemm.inputs[1].producer().attributes.get_int("axis") == 0
    assert _initializer(model, "g_scale").shape == (10,)


def test_exclude_by_op_type_and_include_by_node_id(tmp_path: Path) -> None:
    model = _cnn(tmp_path)
    result = _quantize(model, exclude=("Gemm",))
    assert _ops(model)[-3:] == ["Relu", "Flatten", "Gemm"]
    (skip,) = result.skipped
    assert skip.nodes == ("n5",)
    assert skip.reason == "node n5 (Gemm) not quantized: excluded by exclude=Gemm"

    model = _cnn(tmp_path)
    result = _quantize(model, include=("n5",))
    assert _ops(model) == [
        "Conv",
        "Relu",
        "Conv",
        "Relu",
        "Flatten",
        "QuantizeLinear",
        "DequantizeLinear",
        "DequantizeLinear",
        "DequantizeLinear",
        "Gemm",
    ]
    assert [skip.reason for skip in result.skipped] == [
        "node n0 (Conv) not quantized: neither Conv nor n0 is in include",
        "node n2 (Conv) not quantized: neither Conv nor n2 is in include",
    ]

    model = _cnn(tmp_path)
    (skip,) = _quantize(model, exclude=("n2",)).skipped
    assert skip.reason == "node n2 (Conv) not quantized: excluded by exclude=n2"
    assert _ops(model).count("Conv") == 2 and _ops(model).count("QuantizeLinear") == 3


def test_second_run_changes_nothing_and_says_why(tmp_path: Path) -> None:
    model = _matmul(tmp_path)
    _quantize(model)
    again = _quantize(model)
    assert not again.modified and again.changes == ()
    (skip,) = again.skipped
    assert skip.reason == (
        "node n0 'mm' (MatMul) is already quantized: 'x_dq_n0' comes from a DequantizeLinear"
    )


def _ort_outputs(model: oir.Model, feeds: dict[str, np.ndarray], optimized: Path) -> np.ndarray:
    """Outputs with onnxruntime's default (full) optimizations; saves the optimized model."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    options.log_severity_level = 3
    data = oir.to_proto(model).SerializeToString()
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize(
    ("build", "kernels"),
    [(_mlp, {"MatMulIntegerToFloat"}), (_cnn, {"QLinearConv", "QGemm"})],
)
@pytest.mark.parametrize("observer", ["minmax", "percentile", "entropy"])
def test_onnxruntime_runs_int8_kernels_close_to_fp32(
    tmp_path: Path, build, kernels: set[str], observer: str
) -> None:
    model = build(tmp_path)
    feeds = seeded_inputs(model, 100)
    expected = run_reference(model, feeds)[0]
    _quantize(model, observer=observer)
    got = _ort_outputs(model, feeds, tmp_path / "optimized.onnx")
    assert output_drift(0, expected, got).cosine >= 0.99
    optimized = {node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node}
    assert kernels <= optimized
    assert not optimized & {"MatMul", "Gemm", "Conv", "FusedGemm", "FusedConv"}


def test_pipeline_spec_with_audit_and_numeric_check(tmp_path: Path) -> None:
    model = _cnn(tmp_path)
    passes = parse_pipeline("quantize-int8{observer=entropy activations=asymmetric}")
    (record,) = run_pipeline(model, passes, [VerifyAfterEachPass(), NumericCheck()]).records
    assert record.config["observer"] == "entropy"
    assert record.rule_counts() == {"activation": 10, "weight": 3, "bias": 2}
    assert record.numeric["vs_input"][0]["cosine"] >= 0.99
    reasons = [change.reason for change in record.changes if change.rule == "activation"]
    assert all("entropy observer: seen [" in reason for reason in reasons if "quantized" in reason)


def test_calibration_from_an_npz_file(tmp_path: Path) -> None:
    model = _matmul(tmp_path)
    samples = np.random.default_rng(3).uniform(-2.0, 5.0, (3, 4))  # float64, cast to the input's
    np.savez(tmp_path / "calib.npz", x=samples)  # 3 samples, each fed as a batch of one
    _quantize(model, calibration=str(tmp_path / "calib.npz"))
    peak = np.abs(samples.astype(np.float32)).max()
    assert _initializer(model, "x_scale") == np.float32(float(peak) / 127)


def test_empty_or_unreadable_calibration_files_are_one_line_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 4), np.float32))
    with pytest.raises(AsicperfError, match="holds no samples"):
        _quantize(_matmul(tmp_path), calibration=str(tmp_path / "empty.npz"))
    np.savez(tmp_path / "other.npz", z=np.zeros((2, 4), np.float32))
    with pytest.raises(AsicperfError, match=r"other\.npz has no array 'x'"):
        _quantize(_matmul(tmp_path), calibration=str(tmp_path / "other.npz"))
    with pytest.raises(AsicperfError, match="cannot read calibration file"):
        _quantize(_matmul(tmp_path), calibration=str(tmp_path / "missing.npz"))


def test_old_opsets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AsicperfError, match=r"opset 12; per-channel DequantizeLinear needs"):
        _quantize(_matmul(tmp_path, opset=12))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("observer=kl", "option observer=kl: expected one of minmax, percentile, entropy"),
        ("percentile=0", "percentile=0.0 is outside 0 < percentile <= 100"),
        ("percentile=100.5", "percentile=100.5 is outside 0 < percentile <= 100"),
        ("calibration=0", "calibration=0: the calibration set is empty"),
        ("activations=signed", "expected one of symmetric, asymmetric"),
        ("include=Relu", "include: 'Relu' is neither a quantizable op type"),
    ],
)
def test_bad_configs_are_one_line_errors(options: str, message: str) -> None:
    with pytest.raises(PipelineError) as error:
        parse_pipeline(f"quantize-int8{{{options}}}")
    text = str(error.value)
    assert "\n" not in text and text.startswith("pass 'quantize-int8': ")
    assert message in text
    with pytest.raises(ValueError, match="unknown observer 'kl'"):
        QuantizeInt8Config(observer="kl")  # type: ignore[arg-type]


def test_softmax_outputs_keep_their_whole_unit_range(tmp_path: Path) -> None:
    """Entropy would clip the few large probabilities; the range of a Softmax is [0, 1]."""
    (w,) = _weights((4, 3))
    nodes = [
        helper.make_node("Softmax", ["x"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "w"], ["y"]),
    ]
    model = _model(tmp_path, nodes, {"x": [2, 4]}, {"w": w})
    result = _quantize(model, observer="entropy", activations="asymmetric")
    assert _initializer(model, "p_scale") == np.float32(1 / 255)
    assert int(_initializer(model, "p_zero_point")) == 0
    assert "range fixed by Softmax [0, 1])" in result.changes[0].reason
