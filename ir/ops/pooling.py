"""Pooling: one FLOP per window element per output element (compare or add; the average's
divide and LpPool's power are not counted), global pooling one per input element."""

from __future__ import annotations

import math

import onnx_ir as oir

from ir.ops.shapes import Dim, window_output_spatial
from ir.ops.table import CostUnknown, InferredOutput, NodeShapes, define


def _kernel(view: NodeShapes) -> tuple[int, ...]:
    kernel = view.attr_ints("kernel_shape")
    if not kernel:
        raise CostUnknown(f"{view.node.op_type} without kernel_shape")
    return kernel


def _pool_output_numel(view: NodeShapes) -> int:
    try:
        return view.output_numel(0)
    except CostUnknown:
        x = view.input_shape(0)
        spatial = window_output_spatial(view.node, x[2:], _kernel(view))
        return x[0] * x[1] * math.prod(int(dim) for dim in spatial)


def _window_flops(view: NodeShapes) -> int:
    return math.prod(_kernel(view)) * _pool_output_numel(view)


def _pool_shapes(node: oir.Node) -> list[InferredOutput | None]:
    x = node.inputs[0]
    kernel = node.attributes.get_ints("kernel_shape", None)
    if x is None:
        return []
    if x.shape is None or not kernel or len(kernel) != len(x.shape) - 2:
        return [(x.dtype, None)]
    dims: list[Dim] = [*x.shape.dims[:2], *window_output_spatial(node, x.shape.dims[2:], kernel)]
    return [(x.dtype, oir.Shape(dims))]


def _global_pool_shapes(node: oir.Node) -> list[InferredOutput | None]:
    x = node.inputs[0]
    if x is None:
        return []
    if x.shape is None:
        return [(x.dtype, None)]
    return [(x.dtype, oir.Shape([*x.shape.dims[:2], *[1] * (len(x.shape) - 2)]))]


define(
    ("MaxPool", "AveragePool", "LpPool"),
    "pooling",
    _window_flops,
    shapes=_pool_shapes,
    formula="prod(kernel) * output elements",
)


def _global_flops(view: NodeShapes) -> int:
    return view.input_numel(0)


define(
    ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"),
    "pooling",
    _global_flops,
    shapes=_global_pool_shapes,
    formula="input elements",
)
