"""The ops this target runs, one numpy kernel each, with ONNX's semantics (opset 7 and later).

The table's keys are the target's op list: `capabilities()` declares exactly these, so adding an
op is adding a kernel here. A kernel takes the node's inputs (None for an omitted optional one),
its attributes as plain Python values and the model's opset, and returns the one output. Shape
errors surface as ValueError; the session turns them into a one-line error naming the node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Inputs = Sequence[np.ndarray | None]
Attrs = Mapping[str, Any]
NumpyKernel = Callable[[Inputs, Attrs, int], np.ndarray]


def _matmul(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    return np.matmul(inputs[0], inputs[1])


def _gemm(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"Gemm needs 2-D A and B, got shapes {list(a.shape)} and {list(b.shape)}")
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    scalar = a.dtype.type
    y = scalar(attrs.get("alpha", 1.0)) * np.matmul(a, b)
    if c is not None:
        y = y + scalar(attrs.get("beta", 1.0)) * c  # C broadcasts to [M, N]
    return y


def _add(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    return np.add(inputs[0], inputs[1])  # numpy's broadcasting is ONNX's (opset >= 7)


def _mul(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    return np.multiply(inputs[0], inputs[1])


def _relu(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    return np.maximum(inputs[0], 0)


# erf elementwise: numpy has none; in float64, then back to the input's type.
_ERF = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    """ONNX's Gelu at any opset (the target runs its own kernel, so it also takes the op below
    opset 20, where ONNX does not define it): the erf form, or with approximate="tanh" the
    tanh approximation."""
    x = inputs[0]
    if attrs.get("approximate", "none") == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return (0.5 * x * (1.0 + np.tanh(inner))).astype(x.dtype)
    return (0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0)))).astype(x.dtype)


def _sigmoid(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    x = inputs[0]
    e = np.exp(-np.abs(x))  # never overflows, unlike exp(-x) for large negative x
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _tanh(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    return np.tanh(inputs[0])


def _softmax(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    x = inputs[0]
    if opset >= 13:  # one axis, default the last
        return _softmax_along(x, attrs.get("axis", -1))
    # Before opset 13: the input is seen as 2-D [prod(dims < axis), prod(dims >= axis)].
    axis = _axis(attrs.get("axis", 1), x.ndim)
    rows = x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))
    return _softmax_along(rows, 1).reshape(x.shape)


def _softmax_along(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _reshape(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    x, shape = inputs[0], [int(d) for d in inputs[1]]
    if not attrs.get("allowzero", 0):  # 0 copies the input's dim at that index
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _flatten(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    x = inputs[0]
    axis = _axis(attrs.get("axis", 1), x.ndim)
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _transpose(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    return np.transpose(inputs[0], attrs.get("perm"))  # no perm: reverse the axes


def _identity(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    return inputs[0]


def _conv(inputs: Inputs, attrs: Attrs, opset: int) -> np.ndarray:
    """2-D convolution, group 1, as one matrix product over im2col patches."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"Conv runs 2-D only, got X {list(x.shape)} and W {list(w.shape)}")
    n, channels, height, width = x.shape
    filters, w_channels, kh, kw = w.shape
    if w_channels != channels:
        raise ValueError(f"Conv: X has {channels} channels, W expects {w_channels} (group 1)")
    sh, sw = attrs.get("strides", (1, 1))
    dh, dw = attrs.get("dilations", (1, 1))
    top, left, bottom, right = _conv_pads(attrs, (height, width), (kh, kw), (sh, sw), (dh, dw))
    out_h = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + left + right - dw * (kw - 1) - 1) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"Conv: kernel {[kh, kw]} does not fit the padded input")
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    patches = np.empty((n, channels, kh, kw, out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (out_h - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (out_w - 1) + 1, sw)
            patches[:, :, i, j] = padded[:, :, rows, cols]
    columns = patches.reshape(n, channels * kh * kw, out_h * out_w)
    y = np.matmul(w.reshape(filters, -1), columns)  # [N, M, out_h * out_w]
    if bias is not None:
        y += bias.reshape(1, filters, 1)
    return y.reshape(n, filters, out_h, out_w)


def _conv_pads(
    attrs: Mapping[str, Any],
    spatial: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from `pads` or `auto_pad`, which depends on the input size."""
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        return tuple(attrs.get("pads", (0, 0, 0, 0)))
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        half = total // 2  # SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the start
        begin = half if auto_pad == "SAME_UPPER" else total - half
        begins.append(begin)
        ends.append(total - begin)
    return (begins[0], begins[1], ends[0], ends[1])


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


KERNELS: dict[str, NumpyKernel] = {
    "Add": _add,
    "Conv": _conv,
    "Flatten": _flatten,
    "Gelu": _gelu,
    "Gemm": _gemm,
    "Identity": _identity,
    "MatMul": _matmul,
    "Mul": _mul,
    "Relu": _relu,
    "Reshape": _reshape,
    "Sigmoid": _sigmoid,
    "Softmax": _softmax,
    "Tanh": _tanh,
    "Transpose": _transpose,
}
