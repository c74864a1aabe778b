"""Matrix products and convolutions: MatMul, Gemm, Conv, ConvTranspose, their integer and
QLinear forms, Einsum and Attention.

One multiply-add is 2 FLOPs (integer kernels count "ops" the same way). Gemm's alpha/beta
scaling and the zero-point and requantisation arithmetic of integer forms are not counted: they
are O(outputs) next to O(outputs * K) and runtimes fold them into the multiply-add epilogue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import onnx_ir as oir

from ir.ops.shapes import (
    Dim,
    broadcast_int_shapes,
    matmul_int_flops,
    matmul_shape,
    window_output_spatial,
)
from ir.ops.table import (
    CostUnknown,
    FlopsRule,
    InferredOutput,
    NodeShapes,
    ShapeRule,
    define,
)

# ---- matmul ---------------------------------------------------------------------------------


def _matmul_rule(a: int, b: int) -> FlopsRule:
    def flops(view: NodeShapes) -> int:
        return matmul_int_flops(view.input_shape(a), view.input_shape(b))

    return flops


def matmul_shapes(a: int = 0, b: int = 1, dtype: oir.DataType | None = None) -> ShapeRule:
    """Output 0 of a numpy.matmul of inputs a and b; dtype from input a unless fixed."""

    def rule(node: oir.Node) -> list[InferredOutput | None]:
        left, right = node.inputs[a], node.inputs[b]
        if left is None or right is None:
            return []
        shape = None
        if left.shape is not None and right.shape is not None:
            shape = matmul_shape(left.shape, right.shape)
        return [(dtype or left.dtype, shape)]

    return rule


_MATMUL_FORMULA = "2 * batch * M * N * K (batch dims broadcast)"
define("MatMul", "matmul", _matmul_rule(0, 1), shapes=matmul_shapes(), formula=_MATMUL_FORMULA)
define(
    "MatMulInteger",
    "matmul",
    _matmul_rule(0, 1),
    shapes=matmul_shapes(dtype=oir.DataType.INT32),
    formula=_MATMUL_FORMULA + " integer ops",
)
define(
    "QLinearMatMul",
    "matmul",
    _matmul_rule(0, 3),
    shapes=matmul_shapes(0, 3),
    formula=_MATMUL_FORMULA + " integer ops; requantisation not counted",
)


def _gemm_flops(view: NodeShapes) -> int:
    a, b = view.input_shape(0), view.input_shape(1)
    if len(a) != 2 or len(b) != 2:
        raise CostUnknown("Gemm operands must be 2-D")
    m, k = reversed(a) if view.attr_int("transA", 0) else a
    n = b[0] if view.attr_int("transB", 0) else b[1]
    bias = m * n if view.has_input(2) else 0
    return 2 * m * n * k + bias


define(
    "Gemm",
    "matmul",
    _gemm_flops,
    formula="2 * M * N * K + M * N when C is given (alpha, beta scaling not counted)",
)

# ---- convolution ----------------------------------------------------------------------------


def _conv_out_spatial(view: NodeShapes, x: int, kernel: Sequence[int]) -> tuple[int, ...]:
    """Y's spatial dims from shape inference, else from X and the attributes."""
    try:
        return view.output_shape(0)[2:]
    except CostUnknown:
        spatial = view.input_shape(x)[2:]
        return tuple(int(dim) for dim in window_output_spatial(view.node, spatial, kernel))


def _conv_rule(x: int, w: int, bias: int | None) -> FlopsRule:
    """2 * N * Cout * prod(out spatial) * (Cin/group) * prod(kernel), + N*Cout*out if bias."""

    def flops(view: NodeShapes) -> int:
        batch = view.input_shape(x)[0]
        weight = view.input_shape(w)  # [Cout, Cin/group, *kernel]
        outputs = batch * weight[0] * math.prod(_conv_out_spatial(view, x, weight[2:]))
        macs = outputs * weight[1] * math.prod(weight[2:])
        has_bias = bias is not None and view.has_input(bias)
        return 2 * macs + (outputs if has_bias else 0)

    return flops


def conv_shapes(x: int = 0, w: int = 1, dtype: oir.DataType | None = None) -> ShapeRule:
    """Output 0 of a Conv-like node: [N, Cout, *window output] from X, W and the attributes."""

    def rule(node: oir.Node) -> list[InferredOutput | None]:
        data, weight = node.inputs[x], node.inputs[w]
        if data is None or weight is None:
            return []
        out_dtype = dtype or data.dtype
        if (
            data.shape is None
            or weight.shape is None
            or min(data.shape.rank(), weight.shape.rank()) < 3
        ):
            return [(out_dtype, None)]
        kernel = node.attributes.get_ints("kernel_shape", None) or list(weight.shape.dims[2:])
        if not all(isinstance(k, int) for k in kernel):
            return [(out_dtype, None)]
        spatial = window_output_spatial(node, list(data.shape.dims[2:]), kernel)
        dims: list[Dim] = [data.shape.dims[0], weight.shape.dims[0], *spatial]
        return [(out_dtype, oir.Shape(dims))]

    return rule


_CONV_FORMULA = "2 * N * Cout * prod(out_spatial) * Cin/group * prod(kernel)"
conv_flops = _conv_rule(0, 1, bias=2)
define(
    "Conv",
    "conv",
    conv_flops,
    shapes=conv_shapes(),
    formula=_CONV_FORMULA + " + N * Cout * prod(out_spatial) if bias",
)
define(
    "ConvInteger",
    "conv",
    _conv_rule(0, 1, bias=None),
    shapes=conv_shapes(dtype=oir.DataType.INT32),
    formula=_CONV_FORMULA + " integer ops",
)
define(
    "QLinearConv",
    "conv",
    _conv_rule(0, 3, bias=8),
    shapes=conv_shapes(0, 3),
    formula=_CONV_FORMULA + " integer ops (+ bias adds); requantisation not counted",
)


def _conv_transpose_out_spatial(view: NodeShapes, kernel: Sequence[int]) -> tuple[int, ...]:
    try:
        return view.output_shape(0)[2:]
    except CostUnknown:
        pass
    explicit = view.attr_ints("output_shape")
    if explicit:
        return tuple(explicit[-len(kernel) :])
    spatial = view.input_shape(0)[2:]
    rank = len(kernel)
    strides = view.attr_ints("strides") or (1,) * rank
    dilations = view.attr_ints("dilations") or (1,) * rank
    pads = view.attr_ints("pads") or (0,) * (2 * rank)
    extra = view.attr_ints("output_padding") or (0,) * rank
    if view.attr_str("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        return tuple(size * stride for size, stride in zip(spatial, strides, strict=True))
    return tuple(
        strides[i] * (spatial[i] - 1)
        + extra[i]
        + (kernel[i] - 1) * dilations[i]
        + 1
        - pads[i]
        - pads[i + rank]
        for i in range(rank)
    )


def _conv_transpose_flops(view: NodeShapes) -> int:
    """Each input element scatters Cout/group * prod(kernel) multiply-adds."""
    x = view.input_shape(0)  # [N, Cin, *in_spatial]
    weight = view.input_shape(1)  # [Cin, Cout/group, *kernel]
    kernel = weight[2:]
    macs = x[0] * x[1] * math.prod(x[2:]) * weight[1] * math.prod(kernel)
    bias = 0
    if view.has_input(2):
        cout = weight[1] * view.attr_int("group", 1)
        bias = x[0] * cout * math.prod(_conv_transpose_out_spatial(view, kernel))
    return 2 * macs + bias


define(
    "ConvTranspose",
    "conv",
    _conv_transpose_flops,
    formula="2 * N * Cin * prod(in_spatial) * Cout/group * prod(kernel)"
    " + N * Cout * prod(out_spatial) if bias",
)

# ---- einsum ---------------------------------------------------------------------------------


def _einsum_flops(view: NodeShapes) -> int:
    """Naive evaluation: every point of the full index space costs (operands - 1) multiplies,
    plus one add when some index is summed away. Matches MatMul for "ij,jk->ik"."""
    equation = view.attr_str("equation", "").replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    sizes: dict[str, int] = {}
    ellipses: list[tuple[int, ...]] = []
    counts: dict[str, int] = {}
    for index, term in enumerate(terms):
        shape = view.input_shape(index)
        before, dots, after = term.partition("...")
        if len(before) + len(after) > len(shape) or (not dots and len(before) != len(shape)):
            raise CostUnknown(f"Einsum term '{term}' does not fit shape {shape}")
        positions = list(zip(before, shape, strict=False))
        positions += list(zip(after, shape[len(shape) - len(after) :], strict=True))
        if dots:
            ellipses.append(shape[len(before) : len(shape) - len(after)])
        for label, size in positions:
            sizes[label] = max(sizes.get(label, 1), size)
            counts[label] = counts.get(label, 0) + 1
    if arrow:
        kept = set(rhs.replace("...", ""))
        ellipsis_summed = bool(ellipses) and "..." not in rhs
    else:
        kept = {label for label, count in counts.items() if count == 1}
        ellipsis_summed = False
    summed = ellipsis_summed or bool(set(sizes) - kept)
    points = math.prod(sizes.values()) * math.prod(broadcast_int_shapes(ellipses))
    return points * ((len(terms) - 1) + (1 if summed else 0))


define(
    "Einsum",
    "matmul",
    _einsum_flops,
    formula="prod(all index sizes) * (operands - 1 + 1 if any index is summed)",
)

# ---- attention ------------------------------------------------------------------------------

# Per attention score: scale by 1/sqrt(d) (1) + softmax (5, as Softmax below).
ATTENTION_FLOPS_PER_SCORE = 6


def _heads(view: NodeShapes, name: str) -> int:
    heads = view.attr_int(name, 0)
    if heads <= 0:
        raise CostUnknown(f"Attention with 3-D inputs needs '{name}'")
    return heads


def _attention_flops(view: NodeShapes) -> int:
    q, k, v = view.input_shape(0), view.input_shape(1), view.input_shape(2)
    if len(q) == 4:
        batch, q_heads, q_len, head_size = q
    else:
        batch, q_len, hidden = q
        q_heads = _heads(view, "q_num_heads")
        head_size = hidden // q_heads
    kv_len = k[2] if len(k) == 4 else k[1]
    if view.has_input(4):
        kv_len += view.input_shape(4)[2]  # past_key [B, Hkv, past, D]
    v_head_size = v[3] if len(v) == 4 else v[2] // _heads(view, "kv_num_heads")
    scores = batch * q_heads * q_len * kv_len
    return scores * (2 * head_size + 2 * v_head_size + ATTENTION_FLOPS_PER_SCORE)


define(
    "Attention",
    "attention",
    _attention_flops,
    formula="B*Hq*S*L * (2*D [QK^T] + 2*Dv [PV] + 6 [scale + softmax]); masks not counted",
)
