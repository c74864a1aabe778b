"""Shape arithmetic shared by the cost rules and the shape rules.

Two flavours: int-only helpers for costs (where every dim is concrete by the time a rule runs)
and symbolic-aware helpers for shape rules, which must keep "batch" as "batch" and write an
anonymous dim where a size cannot be known statically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import onnx_ir as oir

from ir.ops.table import CostUnknown, InferredOutput, ShapeRule

Dim = int | oir.SymbolicDim


def unknown_dim() -> oir.SymbolicDim:
    return oir.SymbolicDim(None)


def _broadcast_dim(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and a == 1:
        return b
    if isinstance(b, int) and b == 1:
        return a
    if isinstance(a, int) and isinstance(b, int):
        return a if a == b else unknown_dim()  # a mismatch is an invalid model; do not guess
    if isinstance(a, int):
        return a  # the symbolic side must be `a` or 1, and either way the result is `a`
    if isinstance(b, int):
        return b
    if a.value is not None and a.value == b.value:
        return a
    return unknown_dim()


def broadcast_shapes(shapes: Sequence[oir.Shape]) -> oir.Shape:
    """Numpy-style multidirectional broadcast of possibly symbolic shapes."""
    rank = max((len(shape) for shape in shapes), default=0)
    result: list[Dim] = [1] * rank
    for shape in shapes:
        dims = [1] * (rank - len(shape)) + list(shape.dims)
        result = [_broadcast_dim(a, b) for a, b in zip(result, dims, strict=True)]
    return oir.Shape(result)


def broadcast_int_shapes(shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Broadcast concrete shapes; an incompatible pair means the cost cannot be trusted."""
    rank = max((len(shape) for shape in shapes), default=0)
    result = [1] * rank
    for shape in shapes:
        dims = [1] * (rank - len(shape)) + list(shape)
        for axis, (a, b) in enumerate(zip(result, dims, strict=True)):
            if a != b and 1 not in (a, b):
                raise CostUnknown(f"shapes {list(shapes)} do not broadcast")
            result[axis] = b if a == 1 else a
    return tuple(result)


def matmul_shape(a: oir.Shape, b: oir.Shape) -> oir.Shape | None:
    """numpy.matmul output shape, with 1-D operands promoted and the promoted axis dropped."""
    if len(a) == 0 or len(b) == 0:
        return None
    a_dims = list(a.dims) if len(a) > 1 else [1, a.dims[0]]
    b_dims = list(b.dims) if len(b) > 1 else [b.dims[0], 1]
    batch = broadcast_shapes([oir.Shape(a_dims[:-2]), oir.Shape(b_dims[:-2])])
    dims = list(batch.dims)
    if len(a) > 1:
        dims.append(a_dims[-2])
    if len(b) > 1:
        dims.append(b_dims[-1])
    return oir.Shape(dims)


def matmul_int_flops(a: Sequence[int], b: Sequence[int]) -> int:
    """2*batch*M*N*K for numpy.matmul of concrete shapes (one multiply-add = 2 FLOPs)."""
    if not a or not b:
        raise CostUnknown("matmul of a scalar")
    a = tuple(a) if len(a) > 1 else (1, a[0])
    b = tuple(b) if len(b) > 1 else (b[0], 1)
    batch = broadcast_int_shapes([a[:-2], b[:-2]])
    m, k = a[-2:]
    n = b[-1]
    return 2 * math.prod(batch) * m * n * k


def swap_last_two(shape: oir.Shape) -> oir.Shape:
    dims = list(shape.dims)
    if len(dims) >= 2:
        dims[-2], dims[-1] = dims[-1], dims[-2]
    return oir.Shape(dims)


def copy_shape(shape: oir.Shape | None) -> oir.Shape | None:
    return None if shape is None else oir.Shape(list(shape.dims))


def window_output_size(
    size: int,
    kernel: int,
    *,
    stride: int,
    dilation: int,
    pads: tuple[int, int],
    auto_pad: str,
    ceil_mode: bool,
) -> int:
    """Output length of one sliding-window axis (Conv and pooling), as ONNX defines it."""
    effective = (kernel - 1) * dilation + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return -(-size // stride)
    if auto_pad == "VALID":
        return (size - effective) // stride + 1
    span = size + pads[0] + pads[1] - effective
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pads[0]:
        out -= 1  # the last window may not start inside the right padding
    return out


def window_output_spatial(
    node: oir.Node, spatial: Sequence[Dim], kernel: Sequence[int]
) -> list[Dim]:
    """Spatial output dims of a Conv/pool node from its attributes; symbolic in, unknown out.

    Attributes whose lengths do not fit the kernel's rank (a malformed node) give unknown dims.
    """
    rank = len(kernel)
    attributes = node.attributes
    strides = attributes.get_ints("strides", None) or [1] * rank
    dilations = attributes.get_ints("dilations", None) or [1] * rank
    pads = attributes.get_ints("pads", None) or [0] * (2 * rank)
    auto_pad = attributes.get_string("auto_pad", "NOTSET")
    ceil_mode = bool(attributes.get_int("ceil_mode", 0))
    if len(spatial) != rank or len(strides) != rank or len(dilations) != rank:
        return [unknown_dim() for _ in spatial]
    if len(pads) != 2 * rank:
        return [unknown_dim() for _ in spatial]
    dims: list[Dim] = []
    for axis, size in enumerate(spatial):
        if not isinstance(size, int):
            dims.append(unknown_dim())
            continue
        dims.append(
            window_output_size(
                size,
                kernel[axis],
                stride=strides[axis],
                dilation=dilations[axis],
                pads=(pads[axis], pads[axis + rank]),
                auto_pad=auto_pad,
                ceil_mode=ceil_mode,
            )
        )
    return dims


# ---- shape rules -------------------------------------------------------------------------


def same_as_input(index: int = 0, dtype: oir.DataType | None = None) -> ShapeRule:
    """Output 0 has input `index`'s shape and dtype (or the fixed `dtype`)."""

    def rule(node: oir.Node) -> list[InferredOutput | None]:
        source = node.inputs[index] if index < len(node.inputs) else None
        if source is None:
            return []
        return [(dtype or source.dtype, copy_shape(source.shape))]

    return rule


def broadcast_inputs(dtype: oir.DataType | None = None, dtype_from: int = 0) -> ShapeRule:
    """Output 0 is the broadcast of all present inputs; dtype fixed or taken from an input."""

    def rule(node: oir.Node) -> list[InferredOutput | None]:
        present = [value for value in node.inputs if value is not None]
        source = node.inputs[dtype_from] if dtype_from < len(node.inputs) else None
        out_dtype = dtype or (source.dtype if source is not None else None)
        shapes = [value.shape for value in present]
        if not present or any(shape is None for shape in shapes):
            return [(out_dtype, None)]
        return [(out_dtype, broadcast_shapes([s for s in shapes if s is not None]))]

    return rule
