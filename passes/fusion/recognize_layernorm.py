"""recognize-layernorm: decomposed LayerNorm -> ONNX `LayerNormalization`.

Exporters below opset 17 (and many above) spell LayerNorm as nine nodes:

    mean = ReduceMean(x); d = x - mean; var = ReduceMean(d^2)         (Pow(d, 2) or d * d)
    y = d / Sqrt(var + eps) * gamma + beta                             (or d * Reciprocal(...))

over the last axis or axes, with gamma and beta optional. One LayerNormalization is one kernel
and one cost entry instead of nine. ONNX defines the op from opset 17; below that the pass
emits it only for a target that declares a default-domain LayerNormalization at the model's
opset (its `Capabilities.fused_ops`), and with no target (the default) it skips every site.

The normalization d / Sqrt(var + eps) is the pattern: the square as alternatives, the division
as two rules of one name, the trailing axes a predicate on each ReduceMean. Gamma and beta are
taken by the build (`Rewrite.removes`), not the pattern: they come after its root, and the
engine, which visits nodes in graph order, would rewrite a pattern ending at the division
before it reaches the Mul and Add of a longer one. Taking them where present keeps one site,
one record, per LayerNorm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from passes.contracts import CONSTANT_WEIGHTS
from passes.engine.match import Match
from passes.engine.patterns import AnyValue, Const, OneOf, Op, Scalar
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Emits, Rewrite, RewriteContext, Rule
from passes.rewrite import (
    NoMatch,
    add_initializer,
    constant_array,
    consumer_of,
    leaked_value_reason,
    non_constant_reason,
    other_input,
)
from passes.target_capabilities import TargetedPassConfig

RULE = "layernorm"


@dataclass(frozen=True)
class RecognizeLayerNormConfig(TargetedPassConfig):
    """Only `target`: whether LayerNormalization may be emitted below opset 17."""


def _rank(value: oir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


def _trailing_axes(reduce: oir.Node, rank: int | None) -> tuple[int, ...]:
    """The axes a keepdims ReduceMean averages, as negative numbers (for an input of `rank`);
    NoMatch unless they are its last axes. Axes are an attribute before opset 18 and an input
    from then on."""
    if reduce.attributes.get_int("keepdims", 1) != 1:
        raise NoMatch(f"ReduceMean '{reduce.outputs[0].name}' drops the reduced axes")
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


def _averages_trailing_axes(reduce: oir.Node) -> str | None:
    """The predicate on each ReduceMean: why it is no mean over the last axes of its input."""
    try:
        _trailing_axes(reduce, _rank(reduce.inputs[0]))
    except NoMatch as why:
        return str(why)
    return None


def _one_element(array: np.ndarray) -> str | None:
    return None if array.size == 1 else f"has shape {list(array.shape)}, not one element"


def _mean(source: AnyValue | OneOf, capture: str) -> Op:
    return Op("ReduceMean", (source,), capture=capture, check=_averages_trailing_axes)


X = AnyValue("x")
# d = x - mean(x), one node wherever the pattern reads it.
CENTERED = Op("Sub", (X, _mean(X, "mean")), capture="centered")
SQUARE = OneOf(
    (
        Op("Pow", (CENTERED, Scalar(2.0, rel_tol=0.0, role="exponent"))),
        Op("Mul", (CENTERED, CENTERED)),
    )
)
DEVIATION = Op(
    "Sqrt",
    (Op("Add", (_mean(SQUARE, "variance"), Const("epsilon", role="epsilon", check=_one_element))),),
)
# d / sqrt(var + eps), as a Div or as a Mul by its Reciprocal.
NORMALIZED = (
    Op("Div", (CENTERED, DEVIATION)),
    Op("Mul", (CENTERED, Op("Reciprocal", (DEVIATION,)))),
)


@dataclass(frozen=True)
class _Affine:
    """The Mul by gamma and Add of beta after the normalization that the fusion takes, what
    LayerNormalization gets for each (the value itself, an array to store, or None: ones or
    zeros), and the value the last of them computes."""

    nodes: tuple[oir.Node, ...]
    scale: oir.Value | np.ndarray | None
    bias: oir.Value | np.ndarray | None
    output: oir.Value


def _layer_norm(match: Match, context: RewriteContext) -> Rewrite:
    """One LayerNormalization for the normalization and the scale and bias after it."""
    x = match.value("x")
    assert x is not None, "x is an input"
    axes = _trailing_axes(match.node("mean"), _rank(x))
    if _trailing_axes(match.node("variance"), _rank(x)) != axes:
        raise NoMatch("the mean and the variance reduce different axes")
    shape = _normalized_shape(x, axes)
    if x.dtype is None:
        raise NoMatch(f"the element type of '{x.name}' is unknown")
    affine = _affine_after(match.root.outputs[0], shape, x)
    nodes = (*match.nodes, *affine.nodes)
    leak = leaked_value_reason(nodes, [affine.output])
    if leak is not None:
        raise NoMatch(leak)
    inputs, notes = [x], []
    for role, given, fill in (("scale", affine.scale, 1), ("bias", affine.bias, 0)):
        if isinstance(given, oir.Value):
            inputs.append(given)
            continue
        array = np.full(shape, fill, x.dtype.numpy()) if given is None else given
        value = add_initializer(context.graph, f"{affine.output.name}_{role}", array)
        inputs.append(value)
        notes.append(f"added initializer '{value.name}' ({role})")
    epsilon = float(match.constant("epsilon").reshape(()))
    fused = oir.node("LayerNormalization", inputs, {"axis": -len(axes), "epsilon": epsilon})
    where = "its last axis" if len(axes) == 1 else f"its last {len(axes)} axes"
    return Rewrite(
        (fused,),
        {affine.output: fused.outputs[0]},
        f"{len(nodes)} nodes normalize '{x.name}' over {where}",
        removes=affine.nodes,
        notes=tuple(notes),
    )


def _normalized_shape(x: oir.Value, axes: tuple[int, ...]) -> tuple[int, ...]:
    dims = [] if x.shape is None or len(x.shape) < len(axes) else list(x.shape[-len(axes) :])
    if len(dims) != len(axes) or not all(isinstance(dim, int) for dim in dims):
        raise NoMatch(f"the normalized axes of '{x.name}' have no static size")
    return tuple(int(dim) for dim in dims)


def _affine_after(normalized: oir.Value, shape: tuple[int, ...], x: oir.Value) -> _Affine:
    """The scale and bias after `normalized`: a Mul reading it must be by a constant scale of
    the normalized shape (NoMatch otherwise); an Add after that is the bias only when it adds
    such a constant (a residual Add stays)."""
    nodes, scale, bias, output = [], None, None, normalized
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
    return _Affine(tuple(nodes), scale, bias, output)


def _affine_parameter(
    value: oir.Value | None, shape: tuple[int, ...], x: oir.Value, role: str
) -> oir.Value | np.ndarray | None:
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


class RecognizeLayerNorm(RuleSetPass):
    """Recognize LayerNorm so it is costed and lowered as one normalization, not nine ops."""

    name = "recognize-layernorm"
    summary = "replace decomposed LayerNorm (ReduceMean/Sub/Pow/.../Div) by LayerNormalization"
    config_type = RecognizeLayerNormConfig
    requires = (CONSTANT_WEIGHTS,)  # epsilon, axes, gamma and beta are read as constants
    rules = tuple(
        Rule(RULE, normalized, _layer_norm, requires=Emits("LayerNormalization"))
        for normalized in NORMALIZED
    )
