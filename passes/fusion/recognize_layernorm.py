"""Decomposed LayerNorm -> ONNX `LayerNormalization`.

Exporters below opset 17 (and many above) spell LayerNorm as nine nodes:

    mean = ReduceMean(x); d = x - mean; var = ReduceMean(d^2)         (Pow(d, 2) or d * d)
    y = d / Sqrt(var + eps) * gamma + beta                             (or d * Reciprocal(...))

over the last axis or axes, with gamma and beta optional. One LayerNormalization is one kernel
and one cost entry instead of nine. ONNX defines the op from opset 17; onnxruntime also runs it
in the default domain below that (its own fusions emit it there), so for that target the pass
emits it at any opset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from passes.base import Pass, PassConfig, PassLog
from passes.rewrite import (
    NoMatch,
    add_initializer,
    constant_array,
    consumer_of,
    default_opset,
    leaked_value_reason,
    non_constant_reason,
    other_input,
    replace_nodes,
    scalar_constant,
)

RULE = "layernorm"
_ONNX_LAYERNORM_OPSET = 17
# Targets that run default-domain LayerNormalization below opset 17.
_EARLY_LAYERNORM_TARGETS = frozenset({"onnxruntime", "tvm"})


@dataclass(frozen=True)
class RecognizeLayerNormConfig(PassConfig):
    target: str = "onnxruntime"


@dataclass(frozen=True)
class _Match:
    nodes: list[ir.Node]
    x: ir.Value
    axes: int  # how many trailing axes are normalized
    epsilon: float
    scale: ir.Value | np.ndarray  # an existing value to reuse, or an array to store
    bias: ir.Value | np.ndarray
    output: ir.Value


class RecognizeLayerNorm(Pass):
    """Recognize LayerNorm so it is costed and lowered as one normalization, not nine ops."""

    name = "recognize-layernorm"
    summary = "replace decomposed LayerNorm (ReduceMean/Sub/Pow/.../Div) by LayerNormalization"
    config_type = RecognizeLayerNormConfig

    def run(self, model: ir.Model, log: PassLog) -> None:
        opset, target = default_opset(model), self.config.target
        unsupported = None
        if opset < _ONNX_LAYERNORM_OPSET and target not in _EARLY_LAYERNORM_TARGETS:
            unsupported = (
                f"LayerNormalization needs opset {_ONNX_LAYERNORM_OPSET} (model imports {opset}) "
                f"and target '{target}' does not run it earlier"
            )
        for graph in model.graphs():
            for node in list(graph):
                if node.graph is not graph or (node.op_type, node.domain) != ("ReduceMean", ""):
                    continue
                center = consumer_of(node.outputs[0], "Sub")
                if center is None or list(center.inputs) != [node.inputs[0], node.outputs[0]]:
                    continue  # not x - mean(x): not a site
                try:
                    match = _match(node, center)
                    if unsupported is not None:
                        raise NoMatch(unsupported)
                except NoMatch as why:
                    log.skip([node, center], rule=RULE, reason=str(why))
                    continue
                _replace(graph, match, log)


def _replace(graph: ir.Graph, match: _Match, log: PassLog) -> None:
    inputs = [match.x]
    for role, given in (("scale", match.scale), ("bias", match.bias)):
        if isinstance(given, ir.Value):
            inputs.append(given)
            continue
        value = add_initializer(graph, f"{match.output.name}_{role}", given)
        inputs.append(value)
        log.changed_graph(rule=RULE, reason=f"added initializer '{value.name}' ({role})")
    fused = ir.node("LayerNormalization", inputs, {"axis": -match.axes, "epsilon": match.epsilon})
    where = "its last axis" if match.axes == 1 else f"its last {match.axes} axes"
    replace_nodes(
        log,
        match.nodes,
        [fused],
        {match.output: fused.outputs[0]},
        rule=RULE,
        reason=f"{len(match.nodes)} nodes normalize '{match.x.name}' over {where}",
    )


def _match(mean: ir.Node, center: ir.Node) -> _Match:
    x, centered = mean.inputs[0], center.outputs[0]
    axes = _trailing_axes(mean, x)
    square = _square_of(centered)
    variance = consumer_of(square.outputs[0], "ReduceMean")
    if variance is None:
        raise NoMatch(f"the square of '{centered.name}' is not averaged by a ReduceMean")
    if _trailing_axes(variance, x) != axes:
        raise NoMatch("the mean and the variance reduce different axes")
    shift = consumer_of(variance.outputs[0], "Add")
    root = None if shift is None else consumer_of(shift.outputs[0], "Sqrt")
    if shift is None or root is None:
        raise NoMatch("the variance is not passed through Add(eps) and Sqrt")
    eps_value = other_input(shift, variance.outputs[0])
    epsilon = scalar_constant(eps_value)
    if epsilon is None:
        raise NoMatch(f"epsilon '{eps_value.name}' {_why_not_scalar(eps_value)}")
    divide = _divide_by(centered, root.outputs[0])
    nodes = [mean, center, square, variance, shift, root, *divide]
    normalized = divide[-1].outputs[0]
    shape = _normalized_shape(x, axes)
    if x.dtype is None:
        raise NoMatch(f"the element type of '{x.name}' is unknown")
    scale, bias, output = None, None, normalized
    multiply = consumer_of(normalized, "Mul")
    if multiply is not None:
        scale = _affine_parameter(other_input(multiply, normalized), shape, x, "scale")
        if scale is None:
            raise NoMatch(f"the scale does not match the normalized shape {shape}")
        nodes.append(multiply)
        output = multiply.outputs[0]
    add = consumer_of(output, "Add")
    shift_by = None if add is None else other_input(add, output)
    if add is not None and constant_array(shift_by) is not None:
        bias = _affine_parameter(shift_by, shape, x, "bias")
    if add is not None and bias is not None:
        nodes.append(add)
        output = add.outputs[0]
    leak = leaked_value_reason(nodes, [output])
    if leak is not None:
        raise NoMatch(leak)
    return _Match(
        nodes,
        x,
        len(axes),
        epsilon,
        np.ones(shape, x.dtype.numpy()) if scale is None else scale,
        np.zeros(shape, x.dtype.numpy()) if bias is None else bias,
        output,
    )


def _trailing_axes(reduce: ir.Node, x: ir.Value) -> tuple[int, ...]:
    """The axes a keepdims ReduceMean averages, as negative numbers; NoMatch unless they are the
    last axes of `x`. Axes are an attribute before opset 18 and an input from then on."""
    if reduce.attributes.get_int("keepdims", 1) != 1:
        raise NoMatch(f"ReduceMean '{reduce.outputs[0].name}' drops the reduced axes")
    rank = None if x.shape is None else len(x.shape)
    if len(reduce.inputs) > 1 and reduce.inputs[1] is not None:
        given = constant_array(reduce.inputs[1])
        if given is None:
            raise NoMatch(f"ReduceMean axes '{reduce.inputs[1].name}' are not constant")
        axes = [int(axis) for axis in given.ravel()]
    else:
        axes = list(reduce.attributes.get_ints("axes", []))
    if not axes:
        if reduce.attributes.get_int("noop_with_empty_axes", 0) or rank is None:
            raise NoMatch("ReduceMean reduces no axes or all axes of unknown rank")
        axes = list(range(rank))
    if rank is not None:
        axes = [axis - rank if axis >= 0 else axis for axis in axes]
    negative = tuple(sorted(axes))
    if negative != tuple(range(-len(negative), 0)):
        raise NoMatch(f"ReduceMean averages axes {negative}, not the last axes")
    return negative


def _square_of(centered: ir.Value) -> ir.Node:
    """The Pow(d, 2) or Mul(d, d) node squaring `centered`."""
    for reader in centered.consumers():
        squares = (reader.op_type == "Mul" and list(reader.inputs) == [centered, centered]) or (
            reader.op_type == "Pow"
            and reader.inputs[0] is centered
            and scalar_constant(reader.inputs[1]) == 2.0
        )
        if squares and reader.domain == "":
            return reader
    raise NoMatch(f"'{centered.name}' is not squared by Pow(d, 2) or Mul(d, d)")


def _divide_by(centered: ir.Value, root: ir.Value) -> list[ir.Node]:
    """The Div(d, root) or Reciprocal(root) + Mul(d, .) nodes dividing `centered` by `root`."""
    divide = consumer_of(root, "Div")
    if divide is not None and list(divide.inputs) == [centered, root]:
        return [divide]
    reciprocal = consumer_of(root, "Reciprocal")
    multiply = None if reciprocal is None else consumer_of(reciprocal.outputs[0], "Mul")
    if multiply is not None and other_input(multiply, reciprocal.outputs[0]) is centered:
        return [reciprocal, multiply]
    raise NoMatch(f"'{centered.name}' is not divided by the standard deviation")


def _normalized_shape(x: ir.Value, axes: tuple[int, ...]) -> tuple[int, ...]:
    dims = [] if x.shape is None or len(x.shape) < len(axes) else list(x.shape[-len(axes) :])
    if len(dims) != len(axes) or not all(isinstance(dim, int) for dim in dims):
        raise NoMatch(f"the normalized axes of '{x.name}' have no static size")
    return tuple(int(dim) for dim in dims)


def _why_not_scalar(value: ir.Value) -> str:
    return "is not a scalar" if constant_array(value) is not None else non_constant_reason(value)


def _affine_parameter(
    value: ir.Value | None, shape: tuple[int, ...], x: ir.Value, role: str
) -> ir.Value | np.ndarray | None:
    """The scale or bias LayerNormalization takes for `value`: the value itself when it already
    has the normalized shape, else its constant broadcast to that shape; None when it also
    varies along the leading (not normalized) axes. NoMatch when it is not constant."""
    array = constant_array(value)
    if array is None:
        raise NoMatch(f"{role} '{value.name}' {non_constant_reason(value)}")
    if array.ndim > len(x.shape):
        return None  # broadcasting would add axes
    trailing = array.shape[array.ndim - min(array.ndim, len(shape)) :]
    if math.prod(trailing) != array.size:
        return None  # varies along a leading axis
    try:
        broadcast = np.broadcast_to(array.reshape(trailing), shape)
    except ValueError:
        return None
    return value if array.shape == shape else broadcast.copy()
