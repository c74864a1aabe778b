"""Microbenchmark op definitions: op-table costs by hand, numpy references against onnxruntime,
and one-line errors for bad user input."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as oir
import pytest

from ir.reference import run_reference
from microbench.ops import OPS, BenchCase, parse_case

R, C = 4, 6  # small [R,C] tensor for the row ops
E = R * C

# (op, dtype, shape text, flops, bytes): counts by hand from docs/op-costs.md conventions.
HAND_COSTS = [
    ("gemm", "fp32", "2x3x5", 2 * 2 * 3 * 5, 4 * (2 * 5 + 5 * 3 + 2 * 3)),
    ("gemm", "bf16", "2x3x5", 2 * 2 * 3 * 5, 2 * (2 * 5 + 5 * 3 + 2 * 3)),
    ("gemm", "int8", "2x3x5", 2 * 2 * 3 * 5, 2 * 5 + 5 * 3 + 4 * 2 * 3),
    ("batch_gemm", "fp32", "2x3x4x5", 2 * 2 * 3 * 4 * 5, 4 * 2 * (3 * 5 + 5 * 4 + 3 * 4)),
    ("gemv", "fp32", "3x5", 2 * 3 * 5, 4 * (5 + 5 * 3 + 3)),
    # 1x2x6x6 input, 3 filters 3x3, stride 2, pad 1 -> 1x3x3x3 output
    ("conv2d", "fp32", "1x2x6x6,3x3x3,2", 2 * 27 * 2 * 9, 4 * (72 + 3 * 2 * 9 + 27)),
    ("gelu", "fp32", f"{R}x{C}", 5 * E, 4 * 2 * E),
    ("silu", "fp32", f"{R}x{C}", 4 * E + E, 4 * 2 * E),  # Sigmoid + Mul, one kernel's traffic
    ("sigmoid", "fp32", f"{R}x{C}", 4 * E, 4 * 2 * E),
    ("softmax", "fp32", f"{R}x{C}", 5 * E, 4 * 2 * E),
    ("layer_norm", "fp32", f"{R}x{C}", 8 * E, 4 * (2 * E + 2 * C)),
    ("rms_norm", "fp32", f"{R}x{C}", 4 * E, 4 * (2 * E + C)),
    ("add", "fp32", f"{R}x{C}", E, 4 * 3 * E),
    ("reduce_sum", "fp32", f"{R}x{C}", E, 4 * (E + R)),  # the axes are a constant
    ("cast", "fp16", f"{R}x{C}", 0, 4 * E + 2 * E),
    ("cast", "bf16", f"{R}x{C}", 0, 4 * E + 2 * E),
    ("memcpy", "fp32", f"{R}x{C}", 0, 4 * 2 * E),
]


@pytest.mark.parametrize(("op", "dtype", "shape", "flops", "moved"), HAND_COSTS)
def test_cost_matches_hand_count(op: str, dtype: str, shape: str, flops: int, moved: int) -> None:
    case = parse_case(op, dtype, shape)
    assert (case.flops, case.bytes) == (flops, moved)
    assert case.arithmetic_intensity == pytest.approx(flops / moved)


def test_every_op_and_dtype_is_covered() -> None:
    assert {(op, dtype) for op, dtype, *_ in HAND_COSTS} == {
        (op, dtype) for op, definition in OPS.items() for dtype in definition.dtypes
    }


def run_onnxruntime(case: BenchCase, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The single-op graph's output from onnxruntime. It cannot exchange bfloat16 arrays with
    numpy, so a bf16 case runs its fp32 twin (MatMul, or Identity for the cast) on the bf16
    values and rounds the output to bf16: the same arithmetic as bf16 with fp32 accumulation."""
    if case.dtype != "bf16":
        (output,) = run_reference(oir.serde.deserialize_model(case.onnx_model()), inputs)
        return output
    twin = BenchCase("memcpy" if case.op == "cast" else case.op, "fp32", case.shape)
    wide = {name: value.astype(np.float32) for name, value in inputs.items()}
    return run_onnxruntime(twin, wide).astype(ml_dtypes.bfloat16)


@pytest.mark.parametrize(("op", "dtype", "shape"), [case[:3] for case in HAND_COSTS])
def test_reference_matches_onnxruntime(op: str, dtype: str, shape: str) -> None:
    case = parse_case(op, dtype, shape)
    inputs = case.inputs(seed=7)
    actual = run_onnxruntime(case, inputs)
    expected = case.reference(inputs)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if dtype == "int8":
        np.testing.assert_array_equal(actual, expected)
    else:
        # bf16 results differ by at most a rounding step of the output (2**-8 relative).
        tol = {"fp32": 1e-5, "fp16": 1e-3, "bf16": 1e-2}[dtype]
        np.testing.assert_allclose(
            actual.astype(np.float64), expected.astype(np.float64), rtol=tol, atol=tol
        )


def test_inputs_are_seeded() -> None:
    case = parse_case("add", "fp32", "3x4")
    first, again, other = case.inputs(1), case.inputs(1), case.inputs(2)
    np.testing.assert_array_equal(first["a"], again["a"])
    assert not np.array_equal(first["a"], other["a"])


@pytest.mark.parametrize(
    ("op", "dtype", "shape", "message"),
    [
        ("gemmm", "fp32", "2x3x4", "unknown op 'gemmm' (known: gemm, batch_gemm,"),
        ("softmax", "int8", "2x3", "softmax does not support dtype 'int8' (supported: fp32)"),
        ("gemm", "fp32", "12x", "gemm shape '12x' must be MxNxK with positive integers"),
        ("gemm", "fp32", "0x3x4", "gemm shape '0x3x4' must be MxNxK with positive integers"),
        ("conv2d", "fp32", "1x3x8x8,4x3x1,1", "conv2d shape '1x3x8x8,4x3x1,1' must have a square"),
        ("add", "fp32", "2x3x4", "add shape '2x3x4' must be RxC with positive integers"),
    ],
)
def test_bad_input_is_one_line_error(op: str, dtype: str, shape: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_case(op, dtype, shape)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_int8_gemm_takes_uint8_activations_and_int8_weights() -> None:
    case = parse_case("gemm", "int8", "64x64x64")
    inputs = case.inputs(seed=0)
    assert inputs["a"].dtype == np.uint8 and inputs["b"].dtype == np.int8
    assert inputs["a"].max() > 127 and inputs["b"].min() < 0  # both ranges are used
    graph = case.onnx_model().graph
    assert [node.op_type for node in graph.node] == ["MatMulInteger"]
    assert [i.type.tensor_type.elem_type for i in graph.input] == [
        onnx.TensorProto.UINT8,
        onnx.TensorProto.INT8,
    ]
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
