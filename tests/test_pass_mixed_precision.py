"""mixed-precision: casts only at FP32 boundaries, RNE weights, deny list, and measured drift."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx_ir as oir
import pytest

from ir.low_precision import emulate_low_precision, needs_emulation
from ir.reference import reference_session, run_reference
from passes.audit import Change, ChangeKind, Skip
from passes.instruments import NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import PipelineError, parse_pipeline
from passes.precision.mixed_precision import MixedPrecision, MixedPrecisionConfig
from tests.onnx_text import load_onnx_text

BF16, F32, F16 = oir.DataType.BFLOAT16, oir.DataType.FLOAT, oir.DataType.FLOAT16
ACCUMULATION = "ONNX leaves its accumulation to the runtime and gives its output that type"


def _listing(model: oir.Model) -> list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]]:
    """(op, [(input, dtype)], [(output, dtype)]) per node, in graph order."""
    return [
        (
            node.op_type,
            [(v.name, v.dtype.name) for v in node.inputs],
            [(v.name, v.dtype.name) for v in node.outputs],
        )
        for node in model.graph
    ]


def _bf16(array: np.ndarray) -> np.ndarray:
    """numpy's emulation: RNE to bfloat16, back in float32."""
    return array.astype(ml_dtypes.bfloat16).astype(np.float32)


def _matmul_add_softmax(tmp_path: Path, opset: int = 21) -> oir.Model:
    return load_onnx_text(
        tmp_path,
        f"""<ir_version: 10, opset_import: ["" : {opset}]>
        g (float[2,4] x) => (float[2,3] y)
        <float[4,3] w = {{1.00390625, 1.01171875, 1.0078125, 1.015625, 2, 3, 4, 5, 6, 7, 8, 9}},
         float[3] b = {{0.1, 0.2, 0.3}}> {{
          h = MatMul(x, w)
          a = Add(h, b)
          y = Softmax(a)
        }}""",
    )


def test_cast_insertion_on_matmul_add_softmax(tmp_path: Path) -> None:
    model = _matmul_add_softmax(tmp_path)
    result = MixedPrecision()(model)
    assert _listing(model) == [
        ("Cast", [("x", "FLOAT")], [("x_bfloat16", "BFLOAT16")]),
        ("MatMul", [("x_bfloat16", "BFLOAT16"), ("w_bfloat16", "BFLOAT16")], [("h", "BFLOAT16")]),
        ("Cast", [("h", "BFLOAT16")], [("h_fp32", "FLOAT")]),
        ("Add", [("h_fp32", "FLOAT"), ("b", "FLOAT")], [("a", "FLOAT")]),
        ("Softmax", [("a", "FLOAT")], [("y", "FLOAT")]),
    ]
    assert [node.attributes.get_int("to") for node in model.graph if node.op_type == "Cast"] == [
        int(BF16),
        int(F32),
    ]
    assert sorted(model.graph.initializers) == ["b", "w_bfloat16"]
    # 1+2^-8 and 1+3*2^-8 are ties: they round to the even neighbours 1 and 1+2^-6.
    error = "max abs rounding error 0.00391"
    assert result.changes == (
        Change(
            ChangeKind.ADDED_NODE,
            ("n3",),
            "insert-cast",
            "'x' cast to bfloat16 for a bfloat16 consumer",
        ),
        Change(
            ChangeKind.WEIGHTS,
            ("n0",),
            "convert-weight",
            "weight 'w' converted to bfloat16 offline as 'w_bfloat16' "
            f"(round-to-nearest-even, {error})",
        ),
        Change(
            ChangeKind.DTYPE,
            ("n0",),
            "low-precision",
            f"MatMul computes in bfloat16; {ACCUMULATION}",
        ),
        Change(
            ChangeKind.ADDED_NODE,
            ("n4",),
            "insert-cast",
            "bfloat16 'h' cast back to FP32 for its FP32 readers",
        ),
        Change(
            ChangeKind.GRAPH_IO,
            (),
            "convert-weight",
            "FP32 initializer 'w' removed: only 'w_bfloat16' is read",
        ),
    )
    assert result.skipped == (Skip("deny", ("n2",), "Softmax is on the deny list: kept FP32"),)


def test_weights_are_rounded_to_nearest_even_bit_for_bit(tmp_path: Path) -> None:
    model = _matmul_add_softmax(tmp_path)
    MixedPrecision()(model)
    bits = model.graph.initializers["w_bfloat16"].const_value.numpy().ravel().view(np.uint16)
    # 1+2^-8 -> 1.0 and 1+3*2^-8 -> 1+2^-6 (ties, to the even mantissa); 1+2^-7, 1+2^-6 exact.
    assert [hex(int(b)) for b in bits[:6]] == [
        "0x3f80",
        "0x3f82",
        "0x3f81",
        "0x3f82",
        "0x4000",
        "0x4040",
    ]


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    model = _matmul_add_softmax(tmp_path)
    MixedPrecision()(model)
    again = MixedPrecision()(model)
    assert (again.modified, again.changes) == (False, ())
    assert [skip.rule for skip in again.skipped] == ["deny"]


def _two_matmuls(tmp_path: Path) -> oir.Model:
    rng = np.random.default_rng(0)
    w1, w2 = (", ".join(f"{v:.6f}" for v in rng.standard_normal(n)) for n in (32, 32))
    return load_onnx_text(
        tmp_path,
        f"""<ir_version: 10, opset_import: ["" : 21]>
        g (float[3,4] x) => (float[3,4] y) <float[4,8] w1 = {{{w1}}}, float[8,4] w2 = {{{w2}}}> {{
          h = MatMul(x, w1)
          y = MatMul(h, w2)
        }}""",
    )


def test_consecutive_matmuls_exchange_bfloat16_and_graph_output_stays_fp32(
    tmp_path: Path,
) -> None:
    model = _two_matmuls(tmp_path)
    MixedPrecision()(model)
    assert _listing(model) == [
        ("Cast", [("x", "FLOAT")], [("x_bfloat16", "BFLOAT16")]),
        ("MatMul", [("x_bfloat16", "BFLOAT16"), ("w1_bfloat16", "BFLOAT16")], [("h", "BFLOAT16")]),
        (
            "MatMul",
            [("h", "BFLOAT16"), ("w2_bfloat16", "BFLOAT16")],
            [("y_bfloat16", "BFLOAT16")],
        ),
        ("Cast", [("y_bfloat16", "BFLOAT16")], [("y", "FLOAT")]),
    ]
    assert [(v.name, v.dtype) for v in model.graph.outputs] == [("y", F32)]


def test_redundant_casts_are_removed(tmp_path: Path) -> None:
    """Cast(bf16) -> Cast(f32) -> Cast(bf16) is one Cast(bf16); a Cast to x's own type goes."""
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 10, opset_import: ["" : 21]>
        g (float[2] x) => (bfloat16[2] y, float[2] z) {
          c1 = Cast<to=16>(x)
          c2 = Cast<to=1>(c1)
          c3 = Cast<to=16>(c2)
          y = Neg(c3)
          same = Cast<to=1>(x)
          z = Neg(same)
        }""",
    )
    result = MixedPrecision()(model)
    assert _listing(model) == [
        ("Cast", [("x", "FLOAT")], [("c1", "BFLOAT16")]),
        ("Neg", [("c1", "BFLOAT16")], [("y", "BFLOAT16")]),
        ("Neg", [("x", "FLOAT")], [("z", "FLOAT")]),
    ]
    rule = "redundant-cast"
    assert result.changes == (
        Change(
            ChangeKind.REMOVED_NODE,
            ("n2",),
            rule,
            "Cast removed: it narrows back an exact widening of BFLOAT16 'c1'",
        ),
        Change(ChangeKind.REMOVED_NODE, ("n1",), rule, "Cast removed: no longer read"),
        Change(ChangeKind.REMOVED_NODE, ("n4",), rule, "Cast removed: its input is already FLOAT"),
    )
    x = np.array([1.00390625, -3.3], np.float32)
    y, z = run_reference(emulate_low_precision(_widen_first_output(model)), {"x": x})
    np.testing.assert_array_equal(y, -_bf16(x))
    np.testing.assert_array_equal(z, -x)


def _widen_first_output(model: oir.Model) -> oir.Model:
    """The emulation refuses bfloat16 graph outputs; this test's y is one, so widen it."""
    (y, _) = model.graph.outputs
    cast = oir.node("Cast", [y], {"to": int(F32)})
    cast.outputs[0].name, cast.outputs[0].dtype = "y32", F32
    model.graph.append(cast)
    model.graph.outputs[0] = cast.outputs[0]
    return model


def test_a_fp32_to_bfloat16_to_fp32_chain_is_kept(tmp_path: Path) -> None:
    """Cast(f32 -> bf16 -> f32) rounds; it is not an identity."""
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 10, opset_import: ["" : 21]>
        g (float[2] x) => (float[2] y) {
          c = Cast<to=16>(x)
          y = Cast<to=1>(c)
        }""",
    )
    result = MixedPrecision()(model)
    assert not result.modified and [n.op_type for n in model.graph] == ["Cast", "Cast"]


@pytest.mark.parametrize(
    ("denied", "node_text"),
    [
        ("Softmax", "y = Softmax(h)"),
        ("LayerNormalization", "y = LayerNormalization<axis=-1>(h, s, s)"),
    ],
)
def test_allowed_node_feeding_a_denied_op_stays_fp32(
    tmp_path: Path, denied: str, node_text: str
) -> None:
    model = load_onnx_text(
        tmp_path,
        f"""<ir_version: 10, opset_import: ["" : 21]>
        g (float[2,3] x, float[3,3] w) => (float[2,3] y) <float[3] s = {{1, 1, 1}}> {{
          h = MatMul(x, w)
          {node_text}
        }}""",
    )
    result = MixedPrecision()(model)
    assert not result.modified
    assert all(v.dtype == F32 for node in model.graph for v in [*node.inputs, *node.outputs])
    assert result.skipped == (
        Skip(
            "low-precision",
            ("n0",),
            f"MatMul kept FP32: it feeds node n1 ({denied}), on the deny list, "
            "whose inputs stay FP32",
        ),
        Skip("deny", ("n1",), f"{denied} is on the deny list: kept FP32"),
    )


def test_conv_has_no_bfloat16_version_before_opset_22(tmp_path: Path) -> None:
    text = """<ir_version: 10, opset_import: ["" : OPSET]>
        g (float[1,2,4,4] x, float[3,2,3,3] w) => (float[1,3,2,2] y) { y = Conv(x, w) }"""
    old = load_onnx_text(tmp_path, text.replace("OPSET", "21"))
    result = MixedPrecision()(old)
    assert not result.modified
    assert result.skipped == (
        Skip("low-precision", ("n0",), "Conv kept FP32: it has no bfloat16 version at opset 21"),
    )
    new = load_onnx_text(tmp_path, text.replace("OPSET", "22"))
    assert MixedPrecision()(new).modified
    assert [n.op_type for n in new.graph] == ["Cast", "Cast", "Conv", "Cast"]


def test_float16_runs_on_onnxruntime_with_small_drift(tmp_path: Path) -> None:
    """A small MLP: Gemm -> Relu -> MatMul -> Add. onnxruntime CPU runs float16 Gemm/MatMul."""
    rng = np.random.default_rng(1)
    w1, w2 = (", ".join(f"{v:.6f}" for v in rng.standard_normal(n) / 4) for n in (128, 128))
    model = load_onnx_text(
        tmp_path,
        f"""<ir_version: 10, opset_import: ["" : 17]>
        g (float[4,16] x) => (float[4,8] y)
        <float[16,8] w1 = {{{w1}}}, float[8,16] w2 = {{{w2}}}> {{
          g1 = Gemm(x, w1)
          r = Relu(g1)
          m = MatMul(r, w2)
          y = MatMul(m, w1)
        }}""",
    )
    pipeline = parse_pipeline("mixed-precision{dtype=float16}")
    (record,) = run_pipeline(model, pipeline, [VerifyAfterEachPass(), NumericCheck()]).records
    assert record.rule_counts() == {"insert-cast": 4, "convert-weight": 4, "low-precision": 3}
    assert [n.op_type for n in model.graph] == [
        "Cast", "Gemm", "Cast", "Relu", "Cast", "MatMul", "MatMul", "Cast"
    ]  # fmt: skip
    assert {v.dtype for n in model.graph if n.op_type == "MatMul" for v in n.outputs} == {F16}
    (drift,) = record.numeric["vs_input"]
    # Measured: max_abs 3.4e-4, mean_rel 9.5e-4 (about 2 float16 ulps), cosine 0.99999994.
    assert 0 < drift["max_abs"] < 1e-3 and drift["mean_rel"] < 2e-3 and drift["cosine"] > 0.99999


def _mlp(tmp_path: Path) -> tuple[oir.Model, dict[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    weights = {
        "w1": rng.standard_normal((16, 32)).astype(np.float32),
        "b1": rng.standard_normal(32).astype(np.float32),
        "w2": rng.standard_normal((32, 8)).astype(np.float32),
    }
    text = {k: ", ".join(repr(float(v)) for v in a.ravel()) for k, a in weights.items()}
    model = load_onnx_text(
        tmp_path,
        f"""<ir_version: 10, opset_import: ["" : 21]>
        g (float[64,16] x) => (float[64,8] y)
        <float[16,32] w1 = {{{text["w1"]}}}, float[32] b1 = {{{text["b1"]}}},
         float[32,8] w2 = {{{text["w2"]}}}> {{
          h = MatMul(x, w1)
          a = Add(h, b1)
          r = Relu(a)
          y = MatMul(r, w2)
        }}""",
    )
    return model, weights


def test_bfloat16_emulation_matches_ml_dtypes(tmp_path: Path) -> None:
    model, w = _mlp(tmp_path)
    MixedPrecision()(model)
    x = np.random.default_rng(3).standard_normal((64, 16)).astype(np.float32)
    (got,) = run_reference(emulate_low_precision(model), {"x": x})
    expected = _bf16(
        _bf16(np.maximum(_bf16(_bf16(x) @ _bf16(w["w1"])) + w["b1"], 0)) @ _bf16(w["w2"])
    )
    # Both sides sum in FP32, in their own order; measured: all 512 outputs bit-identical.
    ulps = np.abs(got.view(np.int32) - expected.view(np.int32)) >> 16
    assert ulps.max() <= 1 and (ulps == 0).mean() > 0.99
    # onnxruntime itself cannot load the bfloat16 model on CPU; run_reference emulates it.
    with pytest.raises(Exception, match="MatMul"):
        reference_session(model)
    np.testing.assert_array_equal(run_reference(model, {"x": x})[0], got)
    (fp32,) = run_reference(_mlp(tmp_path)[0], {"x": x})
    assert 1e-4 < float(np.abs(got - fp32).max() / np.abs(fp32).max()) < 2e-2


def test_emulation_leaves_the_model_alone(tmp_path: Path) -> None:
    model, _ = _mlp(tmp_path)
    MixedPrecision()(model)
    before = _listing(model)
    emulated = emulate_low_precision(model)
    assert _listing(model) == before
    assert (needs_emulation(model), needs_emulation(emulated)) == (True, False)
    assert all(v.dtype == F32 for n in emulated.graph if n.op_type != "Cast" for v in n.outputs)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "mixed-precision{dtype=int4}",
            "pass 'mixed-precision': option dtype=int4: expected one of bfloat16, float16",
        ),
        (
            "mixed-precision{allow=MatMul,Matmull}",
            "pass 'mixed-precision': unknown op 'Matmull' in allow (not an ONNX operator)",
        ),
        (
            "mixed-precision{deny=Softmax,Foo}",
            "pass 'mixed-precision': unknown op 'Foo' in deny (not an ONNX operator)",
        ),
    ],
)
def test_bad_options_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(PipelineError) as error:
        parse_pipeline(spec)
    assert str(error.value) == message


def test_direct_config_rejects_an_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="dtype must be bfloat16 or float16, not 'int4'"):
        MixedPrecisionConfig(dtype="int4")  # type: ignore[arg-type]


def test_allow_option_switches_other_ops_by_their_schema(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 10, opset_import: ["" : 21]>
        g (float[2,3] x, int64[2] shape) => (float[3,2] y) {
          r = Relu(x)
          y = Reshape(r, shape)
        }""",
    )
    (MixedPrecision(MixedPrecisionConfig(allow=("Relu", "Reshape"))))(model)
    assert _listing(model) == [
        ("Cast", [("x", "FLOAT")], [("x_bfloat16", "BFLOAT16")]),
        ("Relu", [("x_bfloat16", "BFLOAT16")], [("r", "BFLOAT16")]),
        ("Reshape", [("r", "BFLOAT16"), ("shape", "INT64")], [("y_bfloat16", "BFLOAT16")]),
        ("Cast", [("y_bfloat16", "BFLOAT16")], [("y", "FLOAT")]),
    ]


def test_float16_keeps_weights_beyond_its_range_fp32(tmp_path: Path) -> None:
    model = load_onnx_text(
        tmp_path,
        """<ir_version: 10, opset_import: ["" : 21]>
        g (float[1,2] x) => (float[1,2] y) <float[2,2] w = {1, 2, 3, 100000}> {
          y = MatMul(x, w)
        }""",
    )
    result = MixedPrecision(MixedPrecisionConfig(dtype="float16"))(model)
    assert not result.modified
    assert result.skipped == (
        Skip(
            "low-precision",
            ("n0",),
            "MatMul kept FP32: weight 'w' exceeds float16's range (max |w| = 1e+05)",
        ),
    )


def _fused_conv(tmp_path: Path) -> oir.Model:
    weights = ", ".join(str(v) for v in np.linspace(-1, 1, 54))
    return load_onnx_text(
        tmp_path,
        f"""<ir_version: 10, opset_import: ["" : 17, "com.microsoft" : 1]>
        g (float[1,2,4,4] x) => (float[1,3,2,2] y) <float[3,2,3,3] w = {{{weights}}}> {{
          y = com.microsoft.FusedConv<activation="Relu">(x, w)
        }}""",
    )


def test_onnxruntime_fused_conv_runs_in_float16_not_bfloat16(tmp_path: Path) -> None:
    model = _fused_conv(tmp_path)
    result = MixedPrecision()(model)
    assert not result.modified
    assert result.skipped == (
        Skip(
            "low-precision",
            ("n0",),
            "FusedConv kept FP32: it has no bfloat16 version in com.microsoft",
        ),
    )
    x = np.random.default_rng(4).standard_normal((1, 2, 4, 4)).astype(np.float32)
    (fp32,) = run_reference(model, {"x": x})
    assert MixedPrecision(MixedPrecisionConfig(dtype="float16"))(model).modified
    assert [n.op_type for n in model.graph] == ["Cast", "FusedConv", "Cast"]
    (got,) = run_reference(model, {"x": x})
    np.testing.assert_allclose(got, fp32, rtol=0, atol=5e-3)
