"""Plain numpy: the baseline every fused or compiled kernel is compared with. Matmuls go to the
BLAS numpy links (OpenBLAS); everything else is the numpy expression a user would write, with
outputs and scratch preallocated so `run` times the arithmetic, not the allocator."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ir.errors import AsicperfError
from microbench.ops import _EPS, _NUMPY_DTYPES, BenchCase
from microbench.providers.base import Kernel, Provider

# Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf, and this is the usual
# vectorised stand-in, well inside fp32 GELU's tolerance.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _erf(x: np.ndarray) -> np.ndarray:
    t = 1.0 / (1.0 + _ERF_P * np.abs(x))
    poly = t * (_ERF_A[0] + t * (_ERF_A[1] + t * (_ERF_A[2] + t * (_ERF_A[3] + t * _ERF_A[4]))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _conv2d(case: BenchCase, x: np.ndarray, w: np.ndarray) -> Kernel:
    """im2col into a preallocated column buffer, then one batched BLAS matmul."""
    n, c, h, wd, f, k, stride = case.shape
    pad = k // 2
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    padded = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), np.float32)
    interior = padded[:, :, pad : pad + h, pad : pad + wd]
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride].transpose(0, 1, 4, 5, 2, 3)
    columns = np.empty((n, c, k, k, ho, wo), np.float32)
    filters = w.reshape(f, c * k * k)
    y = np.empty((n, f, ho, wo), np.float32)

    def run() -> None:
        np.copyto(interior, x)
        np.copyto(columns, windows)
        np.matmul(filters, columns.reshape(n, c * k * k, ho * wo), out=y.reshape(n, f, ho * wo))

    return Kernel(run, y.copy)


def _row_op(op: str, x: Mapping[str, np.ndarray], y: np.ndarray) -> Callable[[], None]:
    """The elementwise, row-reduction and normalisation ops, writing into `y`."""
    rows = (y.shape[0], 1)
    stat, scratch = np.empty(rows, np.float32), np.empty_like(y)
    match op:
        case "add":
            return lambda: np.add(x["a"], x["b"], out=y)
        case "memcpy" | "cast":
            return lambda: np.copyto(y, x["x"], casting="unsafe")
        case "reduce_sum":
            return lambda: np.sum(x["x"], axis=-1, out=y)
        case "gelu":
            return lambda: np.multiply(
                x["x"] * np.float32(0.5), 1.0 + _erf(x["x"] * np.float32(0.5**0.5)), out=y
            )

    def sigmoid() -> None:
        np.negative(x["x"], out=y)
        np.exp(y, out=y)
        np.add(y, 1.0, out=y)

    def run() -> None:
        match op:
            case "sigmoid":
                sigmoid()
                np.reciprocal(y, out=y)
            case "silu":
                sigmoid()
                np.divide(x["x"], y, out=y)
            case "softmax":
                np.max(x["x"], axis=-1, keepdims=True, out=stat)
                np.subtract(x["x"], stat, out=y)
                np.exp(y, out=y)
                np.sum(y, axis=-1, keepdims=True, out=stat)
                np.divide(y, stat, out=y)
            case "layer_norm":
                np.mean(x["x"], axis=-1, keepdims=True, out=stat)
                np.subtract(x["x"], stat, out=y)
                np.square(y, out=scratch)
                _inverse_rms(scratch, stat)
                np.multiply(y, stat, out=y)
                np.multiply(y, x["scale"], out=y)
                np.add(y, x["bias"], out=y)
            case "rms_norm":
                np.square(x["x"], out=scratch)
                _inverse_rms(scratch, stat)
                np.multiply(x["x"], stat, out=y)
                np.multiply(y, x["scale"], out=y)

    return run


def _inverse_rms(squares: np.ndarray, stat: np.ndarray) -> None:
    np.mean(squares, axis=-1, keepdims=True, out=stat)
    np.add(stat, _EPS, out=stat)
    np.sqrt(stat, out=stat)
    np.reciprocal(stat, out=stat)


def _output_shape(case: BenchCase) -> tuple[int, ...]:
    s = case.shape
    match case.op:
        case "gemm":
            return (s[0], s[1])
        case "batch_gemm":
            return (s[0], s[1], s[2])
        case "gemv":
            return (1, s[0])
        case "reduce_sum":
            return (s[0],)
    return s


class NumpyProvider(Provider):
    """Every op but bf16 gemm, in numpy on the CPU."""

    name = "numpy"

    def unsupported_reason(self, case: BenchCase) -> str | None:
        if case.op in ("gemm", "batch_gemm", "gemv") and case.dtype == "bf16":
            return "numpy has no bf16 arithmetic (ml_dtypes bf16 matmul is an unoptimised loop)"
        return None

    def prepare(self, case: BenchCase, inputs: Mapping[str, np.ndarray]) -> Kernel:
        reason = self.unsupported_reason(case)
        if reason is not None:
            raise AsicperfError(f"numpy cannot run {case}: {reason}")
        x = {name: np.ascontiguousarray(value) for name, value in inputs.items()}
        if case.op == "conv2d":
            return _conv2d(case, x["x"], x["w"])
        y = np.empty(
            _output_shape(case), np.int32 if case.dtype == "int8" else _NUMPY_DTYPES[case.dtype]
        )
        if case.op in ("gemm", "batch_gemm", "gemv"):
            if case.dtype == "int8":
                # numpy has no int8 matmul: widen (timed, as a numpy user must) then int32 matmul.
                wide = {name: np.empty(v.shape, np.int32) for name, v in x.items()}

                def run() -> None:
                    for name, value in x.items():
                        np.copyto(wide[name], value)
                    np.matmul(wide["a"], wide["b"], out=y)

                return Kernel(run, y.copy)
            return Kernel(lambda: np.matmul(x["a"], x["b"], out=y), y.copy)
        return Kernel(_row_op(case.op, x, y), y.copy)
