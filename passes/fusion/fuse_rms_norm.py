"""fuse-rms-norm: decomposed RMSNorm -> one normalization op, with the residual Add before it
folded in where the target declares the skip form.

Decoders (Llama, Mistral, Qwen, SmolLM2) normalize with RMSNorm, which exporters write as its
arithmetic over the last axis:

    y = x * 1 / Sqrt(ReduceMean(x^2) + eps) * weight      (Hugging Face: x * rsqrt(var + eps))

with the square as Pow(x, 2) or x * x, the inverse as Reciprocal, Div(1, .) or a Div of x
itself, and the weight optional. The rules emit, in order of preference, ONNX
`RMSNormalization` (opset 23 on) or the default-domain contrib `SimplifiedLayerNormalization`,
whichever the target declares (with no target, RMSNormalization where the opset defines it).
Both take a scale, so a norm without a weight gets ones.

In a decoder layer every norm reads the residual stream just after an Add (h = h + attention(.);
norm(h)), and the stream goes on past the norm to the next Add. com.microsoft
`SkipSimplifiedLayerNormalization` computes the Add and the norm in one pass over the row and
hands the sum back as its fourth output, so the residual stream continues from there. That is a
rule of its own, `skip-rms-norm`, tried before the plain `rms-norm` at each site, not an option:
the target's declaration already decides whether it applies, and the audit names which rule
fired at each norm. The contrib op takes a 2-D or 3-D input and skip; the rule asks for both
Add inputs of the sum's own shape.

The pattern ends at the normalization x * inverse (or x / root); the weight Mul after it and
the Add before it are taken by the build (`Rewrite.removes`), as recognize-layernorm takes its
gamma and beta: the engine visits nodes in graph order, so one pattern per norm keeps one site,
one record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from ir.node_ids import describe_node
from passes.contracts import CONSTANT_WEIGHTS
from passes.engine.match import Match
from passes.engine.patterns import AnyValue, Const, OneOf, Op, Scalar
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Emits, Rewrite, RewriteContext, Rule
from passes.rewrite import (
    NoMatch,
    add_initializer,
    constant_array,
    other_input,
    produced_by,
    sole_consumer,
)
from passes.target_capabilities import TargetedPassConfig

MICROSOFT = "com.microsoft"
RULE = "rms-norm"
SKIP_RULE = "skip-rms-norm"
# RMSNormalization's stash_type: compute the mean of squares in float32 (its default, written
# out so the fused graph says what it computes).
_STASH_FLOAT = 1
# Ranks com.microsoft SkipSimplifiedLayerNormalization takes ([tokens or batch, seq, hidden]).
_SKIP_RANKS = (2, 3)


@dataclass(frozen=True)
class FuseRmsNormConfig(TargetedPassConfig):
    """Only `target`: whose declarations decide which normalization op is emitted."""


def _reduce_axes(reduce: oir.Node) -> list[int] | None:
    """A ReduceMean's axes: its constant axes input (opset 18 on) or its attribute; None when
    the input is not constant."""
    if len(reduce.inputs) > 1 and reduce.inputs[1] is not None:
        given = constant_array(reduce.inputs[1])
        return None if given is None else [int(axis) for axis in given.ravel()]
    return list(reduce.attributes.get_ints("axes", []))


def _averages_last_axis(reduce: oir.Node) -> str | None:
    """Why a ReduceMean is no keepdims mean over the last axis of its input, or None."""
    name = reduce.outputs[0].name
    if reduce.attributes.get_int("keepdims", 1) != 1:
        return f"ReduceMean '{name}' drops the reduced axis"
    axes = _reduce_axes(reduce)
    if axes is None:
        return f"ReduceMean axes '{reduce.inputs[1].name}' are not constant"
    shape = reduce.inputs[0].shape
    last = None if shape is None else len(shape) - 1
    if axes in ([-1], [last]):
        return None
    return f"ReduceMean '{name}' averages axes {axes or 'all'}, not the last axis"


def _one_element(array: np.ndarray) -> str | None:
    return None if array.size == 1 else f"has shape {list(array.shape)}, not one element"


X = AnyValue("x")
_SQUARE = OneOf((Op("Pow", (X, Scalar(2.0, rel_tol=0.0, role="exponent"))), Op("Mul", (X, X))))
_MEAN_SQUARE = Op("ReduceMean", (_SQUARE,), check=_averages_last_axis)
_ROOT = Op(
    "Sqrt",
    (Op("Add", (_MEAN_SQUARE, Const("epsilon", role="epsilon", check=_one_element))),),
)
_INVERSE = OneOf((Op("Reciprocal", (_ROOT,)), Op("Div", (Scalar(1.0, role="numerator"), _ROOT))))
# x times the inverse root, or x divided by the root.
NORMALIZED = (Op("Mul", (X, _INVERSE)), Op("Div", (X, _ROOT)))


@dataclass(frozen=True)
class _Norm:
    """A checked site: its input, epsilon, the weight Mul the fusion takes (if any), what the
    fused op gets as its scale (the weight itself, an array to store, or ones), and the value
    the last taken node computes."""

    x: oir.Value
    epsilon: float
    weight_mul: oir.Node | None
    scale: oir.Value | np.ndarray
    output: oir.Value

    @property
    def taken(self) -> tuple[oir.Node, ...]:
        return () if self.weight_mul is None else (self.weight_mul,)


def _norm(match: Match, context: RewriteContext) -> _Norm:
    """The site as a `_Norm`; NoMatch where the normalized axis has no static size or the
    element type is not one the granted op is declared for."""
    x = match.value("x")
    assert x is not None, "x is an input"
    hidden = None if x.shape is None or len(x.shape) == 0 else x.shape[-1]
    if not isinstance(hidden, int):
        raise NoMatch(f"the last axis of '{x.name}' has no static size")
    if x.dtype is None:
        raise NoMatch(f"the element type of '{x.name}' is unknown")
    declared = context.declaration
    dtype = np.dtype(x.dtype.numpy()).name
    if declared is not None and dtype not in declared.dtypes:
        raise NoMatch(
            f"target '{context.target}' declares {declared.qualified_name} for "
            f"{', '.join(sorted(declared.dtypes))}, not {dtype}"
        )
    epsilon = float(match.constant("epsilon").reshape(()))
    normalized = match.root.outputs[0]
    weight_mul = _weight_mul(normalized, hidden, len(x.shape))
    if weight_mul is None:
        return _Norm(x, epsilon, None, np.ones(hidden, x.dtype.numpy()), normalized)
    weight = other_input(weight_mul, normalized)
    array = constant_array(weight)
    scale = weight if array is None or array.shape == (hidden,) else array.reshape(hidden)
    return _Norm(x, epsilon, weight_mul, scale, weight_mul.outputs[0])


def _weight_mul(normalized: oir.Value, hidden: int, rank: int) -> oir.Node | None:
    """The Mul by a weight that reads `normalized` alone, if there is one: a [hidden] tensor,
    or a constant of hidden elements along the last axis that does not add axes to the
    result. Any other Mul stays after the fused norm, which then scales by ones."""
    mul = sole_consumer(normalized)
    if mul is None or mul.op_type != "Mul" or mul.domain not in ("", "ai.onnx"):
        return None
    weight = other_input(mul, normalized)
    if weight is None or weight is normalized or weight.shape is None:
        return None
    if tuple(weight.shape) == (hidden,):
        return mul
    array = constant_array(weight)
    along_last = array is not None and array.ndim <= rank and array.shape[-1:] == (hidden,)
    return mul if along_last and array.size == hidden else None


def _scale_input(norm: _Norm, graph: oir.Graph) -> tuple[oir.Value, tuple[str, ...]]:
    """The fused op's scale input, and the note recording an initializer added for it."""
    if isinstance(norm.scale, oir.Value):
        return norm.scale, ()
    value = add_initializer(graph, f"{norm.output.name}_scale", norm.scale)
    role = "ones" if norm.weight_mul is None else "the weight as one row"
    return value, (f"added initializer '{value.name}' ({role})",)


def _rms_norm(match: Match, context: RewriteContext) -> Rewrite:
    """RMSNormalization or SimplifiedLayerNormalization (whichever was granted) for the norm and
    the weight Mul after it."""
    norm = _norm(match, context)
    scale, notes = _scale_input(norm, context.graph)
    assert context.emits is not None, "the rule requires an op"
    attributes: dict[str, object] = {"axis": -1, "epsilon": norm.epsilon}
    if context.emits.op_type == "RMSNormalization":
        attributes["stash_type"] = _STASH_FLOAT
    fused = oir.node(context.emits.op_type, [norm.x, scale], attributes)
    nodes = len(match.nodes) + len(norm.taken)
    return Rewrite(
        (fused,),
        {norm.output: fused.outputs[0]},
        f"{nodes} nodes compute RMSNorm of '{norm.x.name}' over its last axis",
        removes=norm.taken,
        notes=notes,
    )


def _residual_add(match: Match, x: oir.Value) -> oir.Node:
    """The Add computing `x` from two inputs of x's own shape, of a rank the skip kernel takes,
    in the site's graph, before every other reader of its sum; NoMatch otherwise."""
    add = produced_by(x, "Add")
    if add is None or add.graph is not match.root.graph:
        raise NoMatch(f"'{x.name}' is not computed by an Add in this graph")
    if x.shape is None or len(x.shape) not in _SKIP_RANKS:
        raise NoMatch(f"the residual sum '{x.name}' is not known to be 2-D or 3-D")
    if any(value is None or value.shape != x.shape for value in add.inputs):
        raise NoMatch(f"the inputs of Add '{x.name}' do not both have its shape {x.shape}")
    return add


def _skip_rms_norm(match: Match, context: RewriteContext) -> Rewrite:
    """SkipSimplifiedLayerNormalization for the residual Add, the norm and its weight Mul. The
    sum comes back as the fourth output when anything else reads it."""
    norm = _norm(match, context)
    add = _residual_add(match, norm.x)
    graph = context.graph
    site = {*match.nodes, *norm.taken}
    others = [reader for reader in norm.x.consumers() if reader not in site]
    position = {node: index for index, node in enumerate(graph)}  # graph.index walks per call
    last = max(position[node] for node in site)
    early = [reader for reader in others if position.get(reader, -1) < last]
    if early:
        reader = describe_node(early[0])
        raise NoMatch(f"{reader} reads the residual sum '{norm.x.name}' before the norm ends")
    sum_needed = bool(others) or norm.x.is_graph_output()
    scale, notes = _scale_input(norm, graph)
    fused = oir.node(
        "SkipSimplifiedLayerNormalization",
        [add.inputs[0], add.inputs[1], scale],
        {"epsilon": norm.epsilon},
        domain=MICROSOFT,
        num_outputs=4 if sum_needed else 1,
    )
    outputs = {norm.output: fused.outputs[0]}
    if sum_needed:
        for unused in fused.outputs[1:3]:  # mean and inverse deviation: not computed
            unused.name = ""
        outputs[norm.x] = fused.outputs[3]
    kept = "kept as its sum output" if sum_needed else "read by the norm alone"
    return Rewrite(
        (fused,),
        outputs,
        f"{len(match.nodes) + len(norm.taken) + 1} nodes add the residual '{norm.x.name}' "
        f"({kept}) and compute its RMSNorm",
        removes=(add, *norm.taken),
        notes=notes,
    )


class FuseRmsNorm(RuleSetPass):
    """Fuse RMSNorm, and the residual Add before it, into the target's normalization kernels."""

    name = "fuse-rms-norm"
    summary = (
        "replace decomposed RMSNorm (Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul) by "
        "RMSNormalization or SimplifiedLayerNormalization, with a residual Add before it by "
        "com.microsoft SkipSimplifiedLayerNormalization"
    )
    config_type = FuseRmsNormConfig
    requires = (CONSTANT_WEIGHTS,)  # epsilon, the exponent and the axes are read as constants
    rules = (
        *(
            Rule(
                SKIP_RULE,
                normalized,
                _skip_rms_norm,
                requires=Emits("SkipSimplifiedLayerNormalization", MICROSOFT),
            )
            for normalized in NORMALIZED
        ),
        *(
            Rule(
                RULE,
                normalized,
                _rms_norm,
                requires=(Emits("RMSNormalization"), Emits("SimplifiedLayerNormalization")),
            )
            for normalized in NORMALIZED
        ),
    )
