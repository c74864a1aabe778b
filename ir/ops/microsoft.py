"""com.microsoft contrib ops that onnxruntime's optimizers emit and ONNX cannot shape-infer.

Costs reuse the default-domain constants: Gelu (erf) 5 per element, FastGelu (tanh form) 9 (+1
for the optional bias), BiasGelu 1 + 5, QuickGelu x*sigmoid(alpha*x) 1 + 4 + 1, BiasAdd 2,
SkipLayerNormalization the skip add (and bias add) + LayerNormalization's 8,
SkipSimplifiedLayerNormalization the same + RMS normalization's 4. FusedMatMul is MatMul with
optional transposes (alpha not counted); FusedConv is Conv + its activation (+1 per element for
the optional sum input Z); FusedGemm is Gemm + its activation.
"""

from __future__ import annotations

import onnx_ir as oir

from ir.ops.activation import ACTIVATION_FLOPS, GELU_ERF_FLOPS, GELU_TANH_FLOPS, SIGMOID_FLOPS
from ir.ops.linear import ATTENTION_FLOPS_PER_SCORE, conv_flops, conv_shapes
from ir.ops.normalization import LAYER_NORM_FLOPS, RMS_NORM_FLOPS
from ir.ops.shapes import matmul_int_flops, matmul_shape, same_as_input, swap_last_two
from ir.ops.table import (
    CostUnknown,
    FlopsRule,
    InferredOutput,
    NodeShapes,
    define,
    lookup,
    per_output_element,
)

MICROSOFT = "com.microsoft"

# op type -> FLOPs per output element; all keep input 0's shape and dtype.
_ELEMENTWISE: dict[str, int] = {
    "Gelu": GELU_ERF_FLOPS,
    "BiasGelu": 1 + GELU_ERF_FLOPS,
    "QuickGelu": 1 + SIGMOID_FLOPS + 1,
    "BiasAdd": 2,
}


_like_input0 = same_as_input()


for _op_type, _flops in _ELEMENTWISE.items():
    define(
        _op_type,
        "activation" if "Gelu" in _op_type else "elementwise",
        per_output_element(_flops),
        domain=MICROSOFT,
        shapes=_like_input0,
        formula=f"{_flops} * output elements",
    )


def _fast_gelu_flops(view: NodeShapes) -> int:
    bias = 1 if view.has_input(1) else 0
    return (GELU_TANH_FLOPS + bias) * view.output_numel(0)


define(
    "FastGelu",
    "activation",
    _fast_gelu_flops,
    domain=MICROSOFT,
    shapes=_like_input0,
    formula=f"{GELU_TANH_FLOPS} (+1 with bias) * output elements",
)


def _skip_norm_rule(norm_flops: int) -> FlopsRule:
    def flops(view: NodeShapes) -> int:
        adds = 1 + (1 if view.has_input(4) else 0)  # skip, then the optional bias
        return (adds + norm_flops) * view.output_numel(0)

    return flops


def _skip_norm_shapes(node: oir.Node) -> list[InferredOutput | None]:
    """Output 0 (normalized) and output 3 (input + skip + bias) have the input's shape."""
    like = list(_like_input0(node))
    return [like[0], None, None, like[0]] if like else []


for _op_type, _norm in (
    ("SkipLayerNormalization", LAYER_NORM_FLOPS),
    ("SkipSimplifiedLayerNormalization", RMS_NORM_FLOPS),
):
    define(
        _op_type,
        "normalization",
        _skip_norm_rule(_norm),
        domain=MICROSOFT,
        shapes=_skip_norm_shapes,
        formula=f"(1 + 1 with bias + {_norm}) * output elements",
    )


def _batch_transposed(node: oir.Node) -> bool:
    attributes = node.attributes
    return bool(attributes.get_int("transBatchA", 0) or attributes.get_int("transBatchB", 0))


def _fused_matmul_flops(view: NodeShapes) -> int:
    if _batch_transposed(view.node):
        raise CostUnknown("FusedMatMul with transBatchA/transBatchB is not modelled")
    a, b = view.input_shape(0), view.input_shape(1)
    if view.attr_int("transA", 0) and len(a) >= 2:
        a = (*a[:-2], a[-1], a[-2])
    if view.attr_int("transB", 0) and len(b) >= 2:
        b = (*b[:-2], b[-1], b[-2])
    return matmul_int_flops(a, b)


def _fused_matmul_shapes(node: oir.Node) -> list[InferredOutput | None]:
    """MatMul broadcasting after applying transA/transB to the last two axes."""
    a, b = node.inputs[0], node.inputs[1]
    if a is None or b is None:
        return []
    if a.shape is None or b.shape is None or _batch_transposed(node):
        return [(a.dtype, None)]
    a_shape, b_shape = a.shape, b.shape
    if node.attributes.get_int("transA", 0):
        a_shape = swap_last_two(a_shape)
    if node.attributes.get_int("transB", 0):
        b_shape = swap_last_two(b_shape)
    return [(a.dtype, matmul_shape(a_shape, b_shape))]


define(
    "FusedMatMul",
    "matmul",
    _fused_matmul_flops,
    domain=MICROSOFT,
    shapes=_fused_matmul_shapes,
    formula="2 * batch * M * N * K after transA/transB (alpha not counted)",
)


def _epilogue_flops(view: NodeShapes) -> int:
    """FLOPs per output element of a fused op's `activation` attribute (none: 0)."""
    activation = view.attr_str("activation", "")
    if activation and activation not in ACTIVATION_FLOPS:
        raise CostUnknown(f"{view.node.op_type} activation '{activation}' has no cost entry")
    return ACTIVATION_FLOPS.get(activation, 0)


def _fused_conv_flops(view: NodeShapes) -> int:
    per_output = _epilogue_flops(view) + (1 if view.has_input(3) else 0)
    return conv_flops(view) + per_output * view.output_numel(0)


define(
    "FusedConv",
    "conv",
    _fused_conv_flops,
    domain=MICROSOFT,
    shapes=conv_shapes(),
    formula="Conv + (activation FLOPs + 1 with Z) * output elements",
)


_GEMM = lookup("", "Gemm")  # registered by ir.ops.linear, imported above


def _fused_gemm_flops(view: NodeShapes) -> int:
    return _GEMM.flops(view) + _epilogue_flops(view) * view.output_numel(0)


def _fused_gemm_shapes(node: oir.Node) -> list[InferredOutput | None]:
    """[M, N] after transA/transB, like Gemm."""
    a, b = node.inputs[0], node.inputs[1]
    if a is None or b is None:
        return []
    if a.shape is None or b.shape is None or len(a.shape) != 2 or len(b.shape) != 2:
        return [(a.dtype, None)]
    rows = a.shape.dims[1 if node.attributes.get_int("transA", 0) else 0]
    columns = b.shape.dims[0 if node.attributes.get_int("transB", 0) else 1]
    return [(a.dtype, oir.Shape([rows, columns]))]


define(
    "FusedGemm",
    "matmul",
    _fused_gemm_flops,
    domain=MICROSOFT,
    shapes=_fused_gemm_shapes,
    formula="Gemm + activation FLOPs * output elements",
)


def _mha_heads(view: NodeShapes) -> int:
    heads = view.attr_int("num_heads", 0)
    if heads <= 0:
        raise CostUnknown("MultiHeadAttention needs num_heads")
    return heads


def _multi_head_attention_flops(view: NodeShapes) -> int:
    """Q [B, S, N*H]; K and V [B, T, N*H] or [B, N, T, H] (past key/value not counted)."""
    batch, q_len, hidden = view.input_shape(0)
    heads = _mha_heads(view)
    key, value = view.input_shape(1), view.input_shape(2)
    kv_len = key[2] if len(key) == 4 else key[1]
    v_head_size = value[3] if len(value) == 4 else value[2] // heads
    scores = batch * heads * q_len * kv_len
    return scores * (2 * (hidden // heads) + 2 * v_head_size + ATTENTION_FLOPS_PER_SCORE)


def _multi_head_attention_shapes(node: oir.Node) -> list[InferredOutput | None]:
    """Output 0 is [B, S, N*Hv]: Q's batch and length, V's total head width."""
    query, value = node.inputs[0], node.inputs[2] if len(node.inputs) > 2 else None
    if query is None or query.shape is None or query.shape.rank() != 3:
        return [(None if query is None else query.dtype, None)]
    width = query.shape[2]
    if value is not None and value.shape is not None:
        if value.shape.rank() == 3:
            width = value.shape[2]
        elif value.shape.rank() == 4 and isinstance(value.shape[3], int):
            width = node.attributes.get_int("num_heads", 0) * value.shape[3] or width
    return [(query.dtype, oir.Shape([query.shape[0], query.shape[1], width]))]


define(
    "MultiHeadAttention",
    "attention",
    _multi_head_attention_flops,
    domain=MICROSOFT,
    shapes=_multi_head_attention_shapes,
    formula="B*N*S*T * (2*H [QK^T] + 2*Hv [PV] + 6 [scale + softmax]); masks not counted",
)
