"""Hand-written numba kernels: what a tuned CPU kernel library looks like, fp32 only.

numba has no SVML here, so `math.exp`/`math.erf` calls keep loops scalar; exp and erf are
written as polynomials (and exp's 2**k as integer bits) so the row loops can vectorize. The
GEMM lives in `numba_gemm`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numba
import numpy as np

from microbench.ops import BenchCase
from microbench.providers.base import Kernel, Provider
from microbench.providers.numba_gemm import PackedGemm
from microbench.providers.numba_jit import jit, parallel_jit

_F = np.float32
_ROWS_PER_TASK = 8
_MAX_LANES = 16
# exp: x = k*ln2 + r, |r| <= ln2/2; cephes expf polynomial (about 1 ulp) for exp(r).
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504), _F(0.693359375), _F(-2.12194440e-4)
_EXP_LO, _EXP_HI, _K_BIAS = _F(-87.0), _F(88.0), _F(128.5)
_E0, _E1, _E2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_E3, _E4, _E5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
# erf: Abramowitz & Stegun 7.1.26, absolute error <= 1.5e-7.
_P = _F(0.3275911)
_A1, _A2, _A3 = _F(0.254829592), _F(-0.284496736), _F(1.421413741)
_A4, _A5 = _F(-1.453152027), _F(1.061405429)
_INV_SQRT2, _HALF, _ONE, _ZERO = _F(0.7071067811865476), _F(0.5), _F(1.0), _F(0.0)
_EPS = _F(1e-5)


@jit
def _exp_row(x: np.ndarray, out: np.ndarray, bits: np.ndarray) -> None:
    """out = exp(x): polynomial pass, then a 2**k scale built as bits. `x` must not be `out`:
    LLVM's runtime alias check would then pick the scalar loop."""
    for j in range(x.shape[0]):
        v = min(max(x[j], _EXP_LO), _EXP_HI)
        # +128.5 keeps the argument positive, so truncation is floor(v*log2e + 0.5)
        ki = np.int32(v * _LOG2E + _K_BIAS) - np.int32(128)
        k = np.float32(ki)
        r = v - k * _LN2_HI - k * _LN2_LO
        p = ((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5
        out[j] = p * r * r + r + _ONE
        bits[j] = (ki + np.int32(127)) << np.int32(23)
    scale = bits.view(np.float32)
    for j in range(x.shape[0]):
        out[j] *= scale[j]


@jit
def _row_max(x: np.ndarray, lanes: np.ndarray) -> np.float32:
    """max(x) over len(lanes) independent running maxima: a single running max is one serial
    dependency chain that LLVM will not vectorize (about 3x slower)."""
    n, w = x.shape[0], lanes.shape[0]
    lanes[:] = x[0]
    for i in range(0, n - n % w, w):
        for lane in range(w):
            lanes[lane] = max(lanes[lane], x[i + lane])
    m = x[0]
    for lane in range(w):
        m = max(m, lanes[lane])
    for i in range(n - n % w, n):
        m = max(m, x[i])
    return m


@jit
def _softmax_row(x: np.ndarray, out: np.ndarray, bits: np.ndarray, e: np.ndarray) -> None:
    m = _row_max(x, e[:_MAX_LANES])
    for j in range(x.shape[0]):
        e[j] = x[j] - m
    _exp_row(e, out, bits)
    s = _ZERO
    for j in range(x.shape[0]):
        s += out[j]
    inv = _ONE / s
    for j in range(x.shape[0]):
        out[j] *= inv


@jit
def _exp_neg_row(x: np.ndarray, out: np.ndarray, bits: np.ndarray, e: np.ndarray) -> None:
    """out = exp(-x), through the scratch row `e` (`_exp_row` must not write its input)."""
    for j in range(x.shape[0]):
        e[j] = -x[j]
    _exp_row(e, out, bits)


@jit
def _sigmoid_row(x: np.ndarray, out: np.ndarray, bits: np.ndarray, e: np.ndarray) -> None:
    _exp_neg_row(x, out, bits, e)
    for j in range(x.shape[0]):
        out[j] = _ONE / (_ONE + out[j])


@jit
def _silu_row(x: np.ndarray, out: np.ndarray, bits: np.ndarray, e: np.ndarray) -> None:
    _exp_neg_row(x, out, bits, e)
    for j in range(x.shape[0]):
        out[j] = x[j] / (_ONE + out[j])


@jit
def _gelu_row(x: np.ndarray, out: np.ndarray, bits: np.ndarray, e: np.ndarray) -> None:
    for j in range(x.shape[0]):
        out[j] = -_HALF * x[j] * x[j]
    _exp_row(out, e, bits)
    for j in range(x.shape[0]):
        z = x[j] * _INV_SQRT2
        t = _ONE / (_ONE + _P * abs(z))
        poly = ((((_A5 * t + _A4) * t + _A3) * t + _A2) * t + _A1) * t
        y = _ONE - poly * e[j]
        out[j] = _HALF * x[j] * (_ONE + np.copysign(y, z))


def _row_kernel(row_fn: Callable[..., None]) -> Callable[[np.ndarray, np.ndarray], None]:
    """Parallel over row groups; each task owns its scratch rows, so no per-row allocation."""

    @parallel_jit
    def run(x: np.ndarray, out: np.ndarray) -> None:
        rows, cols = x.shape
        for task in numba.prange((rows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
            bits = np.empty(cols, np.int32)
            scratch = np.empty(cols, np.float32)
            for r in range(task * _ROWS_PER_TASK, min(rows, (task + 1) * _ROWS_PER_TASK)):
                row_fn(x[r], out[r], bits, scratch)

    return run


@parallel_jit
def _layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    rows, cols = x.shape
    for r in numba.prange(rows):
        xr, yr = x[r], out[r]
        s = _ZERO
        for j in range(cols):
            s += xr[j]
        mean = s / _F(cols)
        v = _ZERO
        for j in range(cols):
            d = xr[j] - mean
            v += d * d
        inv = _ONE / np.sqrt(v / _F(cols) + _EPS)
        for j in range(cols):
            yr[j] = (xr[j] - mean) * inv * scale[j] + bias[j]


@parallel_jit
def _rms_norm(x: np.ndarray, scale: np.ndarray, out: np.ndarray) -> None:
    rows, cols = x.shape
    for r in numba.prange(rows):
        xr, yr = x[r], out[r]
        s = _ZERO
        for j in range(cols):
            s += xr[j] * xr[j]
        inv = _ONE / np.sqrt(s / _F(cols) + _EPS)
        for j in range(cols):
            yr[j] = xr[j] * inv * scale[j]


_ROW_FNS = {
    "softmax": _softmax_row,
    "sigmoid": _sigmoid_row,
    "silu": _silu_row,
    "gelu": _gelu_row,
}
_ROW_KERNELS = {op: _row_kernel(fn) for op, fn in _ROW_FNS.items()}
SUPPORTED_OPS = ("gemm", *_ROW_FNS, "layer_norm", "rms_norm")


class NumbaProvider(Provider):
    """Packed, register-blocked parallel GEMM (see numba_gemm) and fused one-pass-per-row
    activations and norms."""

    name = "numba"

    def unsupported_reason(self, case: BenchCase) -> str | None:
        if case.op not in SUPPORTED_OPS:
            return f"numba provider has no {case.op} kernel (has: {', '.join(SUPPORTED_OPS)})"
        if case.dtype != "fp32":
            return f"numba provider runs fp32 only, not {case.dtype}"
        return None

    def prepare(self, case: BenchCase, inputs: Mapping[str, np.ndarray]) -> Kernel:
        reason = self.unsupported_reason(case)
        if reason is not None:
            raise ValueError(reason)
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        run: Callable[[], None]
        if case.op == "gemm":
            gemm = PackedGemm(arrays["a"], arrays["b"])
            run, out = gemm.run, gemm.out
        else:
            x = arrays["x"]
            args = (x, *(arrays[k] for k in ("scale", "bias") if k in arrays))
            out = np.empty_like(x)
            fn = {"layer_norm": _layer_norm, "rms_norm": _rms_norm}.get(case.op)
            fn = fn or _ROW_KERNELS[case.op]

            def run() -> None:
                fn(*args, out)

        run()  # compile (or load from cache) outside the timed region
        return Kernel(run=run, result=lambda: out.copy())
