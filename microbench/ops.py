"""Benchmarked ops, each defined once: inputs from a shape spec, the single-op ONNX graph, a numpy
reference, and FLOPs/bytes taken from the project's op table (`ir.ops`) so roofline figures
agree with the per-model cost report.

Shape specs (integers joined by "x"):

- gemm "MxNxK": [M,K] @ [K,N]; batch_gemm "BxMxNxK": [B,M,K] @ [B,K,N]; gemv "NxK": [1,K] @ [K,N]
- conv2d "NxCxHxW,FxKxK,S": NCHW input, F filters of KxK, stride S, padding K//2, no bias
- every other op "RxC": a [R,C] tensor, reductions/normalizations over the last axis

dtypes: "fp32" for every op; gemm also "bf16" and "int8": MatMulInteger of uint8 activations and
int8 weights with an int32 result, the form x86 int8 units (VNNI's vpdpbusd, AMX) and every
int8 GEMM library take (onnxruntime runs int8 x int8 on a path ~15x slower); cast
takes the target dtype ("fp16" or "bf16") of an fp32 -> target conversion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as oir
from onnx import TensorProto, helper

from ir.ops import node_cost
from ir.ops.table import tensor_bytes

OPSET = 23
_ONNX_DTYPES = {
    "fp32": TensorProto.FLOAT,
    "fp16": TensorProto.FLOAT16,
    "bf16": TensorProto.BFLOAT16,
    "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8,
}
_NUMPY_DTYPES = {
    "fp32": np.float32,
    "fp16": np.float16,
    "bf16": ml_dtypes.bfloat16,
    "int8": np.int8,
    "uint8": np.uint8,
}
_EPS = 1e-5
# Largest max-abs error accepted, relative to the reference's largest magnitude: a few ulps of
# the output dtype plus fp32 accumulation over long sums and polynomial exp/erf.
_TOLERANCES = {"fp32": 1e-4, "fp16": 2e-3, "bf16": 1.6e-2, "int8": 0.0}


def _erf(x: np.ndarray) -> np.ndarray:
    """Vectorised erf in float64 (numpy has none; math.erf is exact enough for a reference)."""
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + _EPS) * scale + bias


def _rms_norm(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + _EPS) * scale


def _conv2d(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Direct convolution via a strided window view, padded K//2 like the ONNX graph."""
    pad = w.shape[-1] // 2
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, w.shape[-2:], axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]
    return np.einsum("nchwij,fcij->nfhw", windows, w, optimize=True)


@dataclass(frozen=True)
class _OpDef:
    """What a user may ask of one op: its shape spec pattern and the dtypes it runs in."""

    spec: str
    dtypes: tuple[str, ...]


_MATMULS = ("gemm", "batch_gemm", "gemv")
_ROW_OPS = (
    "gelu",
    "silu",
    "sigmoid",
    "softmax",
    "layer_norm",
    "rms_norm",
    "add",
    "reduce_sum",
    "cast",
    "memcpy",
)
OPS: dict[str, _OpDef] = {
    "gemm": _OpDef("MxNxK", ("fp32", "bf16", "int8")),
    "batch_gemm": _OpDef("BxMxNxK", ("fp32",)),
    "gemv": _OpDef("NxK", ("fp32",)),
    "conv2d": _OpDef("NxCxHxW,FxKxK,S", ("fp32",)),
    **{name: _OpDef("RxC", ("fp32",)) for name in _ROW_OPS if name != "cast"},
    "cast": _OpDef("RxC", ("fp16", "bf16")),
}


@dataclass(frozen=True)
class BenchCase:
    """One op at one dtype and shape; see the module docstring for the shape layout."""

    op: str
    dtype: str
    shape: tuple[int, ...]

    def _input_shapes(self) -> dict[str, tuple[int, ...]]:
        s = self.shape
        match self.op:
            case "gemm":
                return {"a": (s[0], s[2]), "b": (s[2], s[1])}
            case "batch_gemm":
                return {"a": (s[0], s[1], s[3]), "b": (s[0], s[3], s[2])}
            case "gemv":
                return {"a": (1, s[1]), "b": (s[1], s[0])}
            case "conv2d":
                return {"x": s[:4], "w": (s[4], s[1], s[5], s[5])}
            case "add":
                return {"a": s, "b": s}
            case "layer_norm":
                return {"x": s, "scale": (s[1],), "bias": (s[1],)}
            case "rms_norm":
                return {"x": s, "scale": (s[1],)}
            case _:
                return {"x": s}

    def _input_dtypes(self) -> dict[str, str]:
        if self.op == "cast":
            return {name: "fp32" for name in self._input_shapes()}
        if self.dtype == "int8":  # only matmuls: uint8 activations, int8 weights
            return {"a": "uint8", "b": "int8"}
        return {name: self.dtype for name in self._input_shapes()}

    def _nodes(self) -> list[onnx.NodeProto]:
        names = list(self._input_shapes())
        match self.op:
            case "gemm" | "batch_gemm" | "gemv" if self.dtype == "int8":
                return [helper.make_node("MatMulInteger", names, ["y"])]
            case "gemm" | "batch_gemm" | "gemv":
                return [helper.make_node("MatMul", names, ["y"])]
            case "conv2d":
                k, stride = self.shape[5], self.shape[6]
                return [
                    helper.make_node("Conv", names, ["y"], strides=[stride] * 2, pads=[k // 2] * 4)
                ]
            case "silu":
                return [
                    helper.make_node("Sigmoid", ["x"], ["s"]),
                    helper.make_node("Mul", ["x", "s"], ["y"]),
                ]
            case "layer_norm" | "rms_norm":
                op_type = "LayerNormalization" if self.op == "layer_norm" else "RMSNormalization"
                return [helper.make_node(op_type, names, ["y"], axis=-1, epsilon=_EPS)]
            case "softmax":
                return [helper.make_node("Softmax", names, ["y"], axis=-1)]
            case "reduce_sum":
                axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
                return [
                    helper.make_node("Constant", [], ["axes"], value=axes),
                    helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0),
                ]
            case "cast":
                return [helper.make_node("Cast", names, ["y"], to=_ONNX_DTYPES[self.dtype])]
        op_type = {"gelu": "Gelu", "sigmoid": "Sigmoid", "add": "Add", "memcpy": "Identity"}
        return [helper.make_node(op_type[self.op], names, ["y"])]

    def onnx_model(self) -> onnx.ModelProto:
        """The single-op graph (outputs typed by ONNX shape inference), for any runtime."""
        dtypes = self._input_dtypes()
        inputs = [
            helper.make_tensor_value_info(name, _ONNX_DTYPES[dtypes[name]], list(shape))
            for name, shape in self._input_shapes().items()
        ]
        graph = helper.make_graph(self._nodes(), self.op, inputs, [onnx.ValueInfoProto(name="y")])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        return onnx.shape_inference.infer_shapes(proto, strict_mode=True)

    def ir_model(self) -> oir.Model:
        return oir.serde.deserialize_model(self.onnx_model())

    def inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded inputs: integers over the whole range for 8-bit types (int32 sums stay exact),
        N(0,1) otherwise."""
        rng = np.random.default_rng(seed)
        dtypes = self._input_dtypes()
        inputs = {}
        for name, shape in self._input_shapes().items():
            dtype = _NUMPY_DTYPES[dtypes[name]]
            if dtype in (np.int8, np.uint8):
                bounds = np.iinfo(dtype)
                inputs[name] = rng.integers(bounds.min, bounds.max + 1, size=shape, dtype=dtype)
            else:
                inputs[name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        return inputs

    def reference(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The numpy result in the output dtype: float64 math rounded once (int8 gemm exact)."""
        if self.dtype == "int8":
            return np.matmul(inputs["a"].astype(np.int32), inputs["b"].astype(np.int32))
        x = {name: value.astype(np.float64) for name, value in inputs.items()}
        result = _REFERENCES[self.op](self, x)
        return result.astype(_NUMPY_DTYPES[self.dtype])

    def mismatch(self, actual: np.ndarray, expected: np.ndarray) -> str | None:
        """Why an implementation's output is wrong, or None. Errors are scaled by the largest
        reference magnitude, so one bound serves a softmax's tiny values and a GEMM's sums
        alike; int8 GEMM sums are exact."""
        if actual.shape != expected.shape or actual.dtype != expected.dtype:
            return (
                f"output is {actual.dtype}{list(actual.shape)}, "
                f"expected {expected.dtype}{list(expected.shape)}"
            )
        got, want = actual.astype(np.float64), expected.astype(np.float64)
        if not np.isfinite(got).all():
            return "output has NaN or infinite values"
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
        error = float(np.abs(got - want).max(initial=0.0)) / scale
        bound = _TOLERANCES[self.dtype]
        if error > bound:
            return f"differs from the numpy reference: max error {error:.2e} of scale > {bound:g}"
        return None

    @cached_property
    def _cost(self) -> tuple[int, int]:
        """FLOPs summed over the graph's nodes from the op table; bytes are the compulsory
        traffic, each graph input read once and the output written once (sized by the table's
        rule). A kernel is judged as one kernel: silu's Sigmoid -> Mul intermediate is not
        charged, and memcpy's Identity, which the table prices as a view, is a real copy."""
        graph = self.ir_model().graph
        flops = 0
        for node in graph:
            if node.op_type == "Constant":
                continue
            cost = node_cost(node)
            if cost is None:
                raise RuntimeError(f"op table has no cost for {node.op_type} in {self}")
            flops += cost.flops
        boundary = [*graph.inputs, *graph.outputs]
        return flops, sum(tensor_bytes(value, {}) for value in boundary)

    @property
    def flops(self) -> int:
        return self._cost[0]

    @property
    def bytes(self) -> int:
        return self._cost[1]

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved: where the case sits on a roofline."""
        return self.flops / self.bytes

    @property
    def shape_text(self) -> str:
        """The shape as its spec writes it, so `parse_case` reads it back."""
        if self.op == "conv2d":
            n, c, h, w, f, k, stride = self.shape
            return f"{n}x{c}x{h}x{w},{f}x{k}x{k},{stride}"
        return "x".join(map(str, self.shape))

    def __str__(self) -> str:
        return f"{self.op}/{self.dtype}/{self.shape_text}"


_REFERENCES: dict[str, Callable[[BenchCase, dict[str, np.ndarray]], np.ndarray]] = {
    "gemm": lambda c, x: x["a"] @ x["b"],
    "batch_gemm": lambda c, x: x["a"] @ x["b"],
    "gemv": lambda c, x: x["a"] @ x["b"],
    "conv2d": lambda c, x: _conv2d(x["x"], x["w"], c.shape[6]),
    "gelu": lambda c, x: 0.5 * x["x"] * (1.0 + _erf(x["x"] / math.sqrt(2.0))),
    "silu": lambda c, x: x["x"] * _sigmoid(x["x"]),
    "sigmoid": lambda c, x: _sigmoid(x["x"]),
    "softmax": lambda c, x: _softmax(x["x"]),
    "layer_norm": lambda c, x: _layer_norm(x["x"], x["scale"], x["bias"]),
    "rms_norm": lambda c, x: _rms_norm(x["x"], x["scale"]),
    "add": lambda c, x: x["a"] + x["b"],
    "reduce_sum": lambda c, x: x["x"].sum(axis=-1),
    "cast": lambda c, x: x["x"],
    "memcpy": lambda c, x: x["x"],
}


def _parse_shape(op: str, text: str) -> tuple[int, ...]:
    spec = OPS[op].spec
    pattern = re.sub(r"[A-Z]", r"(\\d+)", spec).replace("x", r"\s*x\s*").replace(",", r"\s*,\s*")
    match = re.fullmatch(r"\s*" + pattern + r"\s*", text)
    if match is None or any(int(group) <= 0 for group in match.groups()):
        raise ValueError(f"{op} shape {text!r} must be {spec} with positive integers")
    numbers = tuple(int(group) for group in match.groups())
    if op == "conv2d":
        n, c, h, w, f, k, k2, stride = numbers
        if k != k2:
            raise ValueError(f"conv2d shape {text!r} must have a square kernel (FxKxK)")
        return (n, c, h, w, f, k, stride)
    return numbers


def parse_case(op: str, dtype: str, shape_text: str) -> BenchCase:
    """A case from user text; every mistake is a one-line ValueError naming the fix."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r} (known: {', '.join(OPS)})")
    if dtype not in OPS[op].dtypes:
        raise ValueError(
            f"{op} does not support dtype {dtype!r} (supported: {', '.join(OPS[op].dtypes)})"
        )
    return BenchCase(op, dtype, _parse_shape(op, shape_text))
