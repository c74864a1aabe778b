"""com.microsoft contrib ops that onnxruntime's optimizers emit and ONNX cannot shape-infer.

Costs reuse the default-domain constants: Gelu (erf) 5 per element, FastGelu (tanh form) 9 (+1
for the optional bias), BiasGelu 1 + 5, QuickGelu x*sigmoid(alpha*x) 1 + 4 + 1, BiasAdd 2,
SkipLayerNormalization the skip add (and bias add) + LayerNormalization's 8,
SkipSimplifiedLayerNormalization the same + RMS normalization's 4. FusedMatMul is MatMul with
optional transposes (alpha not counted); FusedConv is Conv + its activation (+1 per element for
the optional sum input Z).
"""

from __future__ import annotations

import onnx_ir as ir

from ir.ops.activation import ACTIVATION_FLOPS, GELU_ERF_FLOPS, GELU_TANH_FLOPS, SIGMOID_FLOPS
from ir.ops.linear import conv_flops, conv_shapes
from ir.ops.normalization import LAYER_NORM_FLOPS, RMS_NORM_FLOPS
from ir.ops.shapes import matmul_int_flops, matmul_shape, same_as_input, swap_last_two
from ir.ops.table import (
    CostUnknown,
    FlopsRule,
    InferredOutput,
    NodeShapes,
    define,
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


def _skip_norm_shapes(node: ir.Node) -> list[InferredOutput | None]:
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


def _batch_transposed(node: ir.Node) -> bool:
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


def _fused_matmul_shapes(node: ir.Node) -> list[InferredOutput | None]:
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


def _fused_conv_flops(view: NodeShapes) -> int:
    activation = view.attr_str("activation", "")
    if activation and activation not in ACTIVATION_FLOPS:
        raise CostUnknown(f"FusedConv activation '{activation}' has no cost entry")
    per_output = ACTIVATION_FLOPS.get(activation, 0) + (1 if view.has_input(3) else 0)
    return conv_flops(view) + per_output * view.output_numel(0)


define(
    "FusedConv",
    "conv",
    _fused_conv_flops,
    domain=MICROSOFT,
    shapes=conv_shapes(),
    formula="Conv + (activation FLOPs + 1 with Z) * output elements",
)
