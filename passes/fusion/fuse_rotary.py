"""fuse-rotary: the rotate-half rotary position embedding -> com.microsoft `RotaryEmbedding`, for a
target that declares it; with no target (the default) sites are only reported, as ONNX has no
such op.

Llama-family exporters write the rotary embedding of queries and keys [batch, heads, seq, head]
as its arithmetic, in the rotate-half layout (the two halves of each head are a frequency's
real and imaginary parts):

    x * cos + rotate_half(x) * sin,    rotate_half(x) = Concat(-x2, x1)    (Slice or Split)

with cos and sin [batch, 1, seq, head], each frequency written twice, either computed in the
graph from the positions (cos(Concat(f, f)), f = Cast(position_ids) * inv_freq) or gathered
from a cached table ([max_position, head] rows picked by position_ids). RotaryEmbedding takes
the input, the int64 positions and cos/sin tables [max_position, head/2], and does the seven
elementwise ops in one pass.

So the fusion stores the tables as constants. For the computed form it evaluates the graph's own
angles, float32(position) * inv_freq, for positions 0 .. max_position - 1 (the inverse
frequencies are the graph's constant, so scaled variants such as Llama 3.1's are kept as they
are; the base theta they imply is recorded in the reason); a cached form gives its table's
first half, all its rows. The graph does not say how long a context the model serves, so the
number of computed rows is the option `max_position`: 8192 by default (SmolLM2's context;
2 x 8192 x head/2 floats, 2 MiB at head 64), at most 1,048,576. A position past the tables is
no silent error: the kernel refuses it ("position_ids value ... is out of range"). The tables
are stored once per graph, however many sites read them, as `<source>.cos_cache` and
`<source>.sin_cache`, and the cos/sin computation goes with its last reader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from passes.contracts import CONSTANT_WEIGHTS
from passes.engine.match import Match
from passes.engine.patterns import AnyValue, OneOf, Op
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Emits, Rewrite, RewriteContext, Rule
from passes.option_range import bounded
from passes.rewrite import (
    NoMatch,
    add_initializer,
    constant_array,
    orphaned_producers,
    other_input,
    produced_by,
)
from passes.target_capabilities import TargetedPassConfig

MICROSOFT = "com.microsoft"
RULE = "rotary"
_ROTARY_TYPES = frozenset({oir.DataType.FLOAT, oir.DataType.FLOAT16, oir.DataType.BFLOAT16})


@dataclass(frozen=True)
class FuseRotaryConfig(TargetedPassConfig):
    """`target`: whose RotaryEmbedding declaration decides what is fused. `max_position`: the
    rows of the cos/sin tables, i.e. the longest context the fused model serves (positions
    0 .. max_position - 1)."""

    max_position: int = bounded(8192, low=1, high=1 << 20)


X = AnyValue("x")
# The halves as two Slices of x, or the two outputs of one Split (the build checks which is which).
SPLIT = Op("Split", (X,), capture="split")
ROTATED = Op(
    "Concat",
    inputs=(
        Op("Neg", (OneOf((Op("Slice", (X,), capture="second"), SPLIT)),)),
        OneOf((Op("Slice", (X,), capture="first"), SPLIT)),
    ),
    capture="concat",
)
ROTARY = Op(
    "Add",
    inputs=(
        Op("Mul", (X, AnyValue("cos"))),
        Op("Mul", (ROTATED, AnyValue("sin"))),
    ),
)


@dataclass(frozen=True)
class Tables:
    """Where cos and sin come from: the int64 positions [batch, seq], the cos/sin tables
    [max_position, head/2] to store, the name the stored tables derive from, and words for the
    audit."""

    positions: oir.Value
    cos: np.ndarray
    sin: np.ndarray
    source: str
    described: str


def _last_axis(axis: int, rank: int) -> bool:
    return axis in (-1, rank - 1)


def _head_size(x: oir.Value) -> int:
    """The static head size of the 4-D [batch, heads, seq, head] input; NoMatch otherwise."""
    shape = x.shape
    if shape is None or len(shape) != 4:
        raise NoMatch(f"'{x.name}' is not known to be 4-D [batch, heads, seq, head]")
    head = shape[3]
    if not isinstance(head, int) or head % 2:
        raise NoMatch(f"'{x.name}' has no static even head size (last dim {head})")
    if x.dtype not in _ROTARY_TYPES:
        raise NoMatch(f"RotaryEmbedding takes float, float16 or bfloat16, not {x.dtype}")
    return head


def _check_halves(match: Match, head: int) -> None:
    """NoMatch unless Concat(Neg(second), first) puts the negated upper half before the lower
    half of the last axis."""
    concat = match.node("concat")
    if not _last_axis(concat.attributes.get_int("axis", 0), 4):
        raise NoMatch("the rotated halves are not concatenated along the last axis")
    if match.captures.get("split") is not None:
        _check_split(match.node("split"), concat, head)
        return
    for name, (start, end) in (("first", (0, head // 2)), ("second", (head // 2, head))):
        if _slice_bounds(match.node(name)) != (start, end):
            raise NoMatch(f"the {name} half is not elements {start}..{end} of the last axis")


def _slice_bounds(node: oir.Node) -> tuple[int, int] | None:
    """(start, end) of a Slice of the last axis with step 1 and constant bounds (an end past the
    axis counts as its length), else None."""
    if len(node.inputs) < 4:
        return None
    starts, ends, axes = (constant_array(value) for value in node.inputs[1:4])
    steps = constant_array(node.inputs[4]) if len(node.inputs) > 4 else np.ones(1)
    if any(array is None or array.size != 1 for array in (starts, ends, axes, steps)):
        return None
    if int(steps.reshape(())) != 1 or not _last_axis(int(axes.reshape(())), 4):
        return None
    size = node.inputs[0].shape[3]
    start, end = int(starts.reshape(())), min(int(ends.reshape(())), size)
    return start + size if start < 0 else start, end + size if end < 0 else end


def _check_split(split: oir.Node, concat: oir.Node, head: int) -> None:
    """NoMatch unless `split` cuts the last axis into two equal halves, the upper one negated."""
    if len(split.outputs) != 2 or not _last_axis(split.attributes.get_int("axis", 0), 4):
        raise NoMatch("the Split does not cut the last axis in two")
    sizes = constant_array(split.inputs[1]) if len(split.inputs) > 1 else None
    if sizes is not None and [int(size) for size in sizes] != [head // 2, head // 2]:
        raise NoMatch(f"the Split cuts sizes {sizes.tolist()}, not two halves of {head}")
    negated = concat.inputs[0].producer().inputs[0]
    if (negated, concat.inputs[1]) != (split.outputs[1], split.outputs[0]):
        raise NoMatch("the Concat does not put the negated upper half first")


def _unsqueezed_over_heads(value: oir.Value, role: str) -> oir.Value:
    """The [batch, seq, head] table of `value` = Unsqueeze(table, [1]); NoMatch otherwise."""
    unsqueeze = produced_by(value, "Unsqueeze")
    axes = None
    if unsqueeze is not None:
        axes = (
            constant_array(unsqueeze.inputs[1])
            if len(unsqueeze.inputs) > 1
            else np.array(unsqueeze.attributes.get_ints("axes", ()))
        )
    if axes is None or axes.ravel().tolist() != [1]:
        raise NoMatch(f"{role} '{value.name}' is not a [batch, seq, head] table unsqueezed at 1")
    return unsqueeze.inputs[0]


def _tables(cos: oir.Value, sin: oir.Value, head: int, max_position: int) -> Tables:
    """The positions and cos/sin tables behind the site's cos and sin (computed or cached)."""
    cos_rows, sin_rows = _unsqueezed_over_heads(cos, "cos"), _unsqueezed_over_heads(sin, "sin")
    cos_op, sin_op = cos_rows.producer(), sin_rows.producer()
    if cos_op is not None and sin_op is not None:
        if (cos_op.op_type, sin_op.op_type) == ("Cos", "Sin"):
            return _computed_tables(cos_op.inputs[0], sin_op.inputs[0], head, max_position)
        if (cos_op.op_type, sin_op.op_type) == ("Gather", "Gather"):
            return _cached_tables(cos_op, sin_op, head)
    raise NoMatch("cos and sin are neither Cos/Sin of angles nor rows gathered from tables")


def _computed_tables(angles: oir.Value, other: oir.Value, head: int, rows: int) -> Tables:
    """Tables for cos/sin of Concat(f, f) with f = Unsqueeze(Cast(positions), [2]) * inv_freq."""
    if angles is not other:
        raise NoMatch("cos and sin are taken of different angles")
    concat = produced_by(angles, "Concat")
    if concat is None or len(concat.inputs) != 2 or concat.inputs[0] is not concat.inputs[1]:
        raise NoMatch(f"the angles '{angles.name}' are not one set of frequencies written twice")
    multiply = produced_by(concat.inputs[0], "Mul")
    if multiply is None:
        raise NoMatch("the angles are not positions times inverse frequencies")
    for frequencies in multiply.inputs:
        inverse = constant_array(frequencies)
        if inverse is not None:
            break
    else:
        raise NoMatch("the inverse frequencies are not a constant")
    if inverse.size != head // 2:
        raise NoMatch(f"{inverse.size} inverse frequencies for head size {head}")
    positions = _positions_from_cast(other_input(multiply, frequencies))
    inverse = inverse.astype(np.float32).ravel()
    angle = np.arange(rows, dtype=np.float32)[:, None] * inverse[None, :]  # the graph's float32
    theta = float(inverse[1]) ** (-head / 2) if inverse.size > 1 and inverse[1] > 0 else math.nan
    described = f"cos/sin computed from '{positions.name}' (base theta {theta:.6g})"
    return Tables(positions, np.cos(angle), np.sin(angle), frequencies.name, described)


def _positions_from_cast(value: oir.Value | None) -> oir.Value:
    """The int64 [batch, seq] positions p of Unsqueeze(Cast(p), [2]); NoMatch otherwise."""
    unsqueeze = produced_by(value, "Unsqueeze")
    cast = None if unsqueeze is None else produced_by(unsqueeze.inputs[0], "Cast")
    axes = None if unsqueeze is None or len(unsqueeze.inputs) < 2 else unsqueeze.inputs[1]
    if cast is None or constant_array(axes) is None or constant_array(axes).tolist() != [2]:
        raise NoMatch("the angles' positions are not Unsqueeze(Cast(position_ids), [2])")
    return _int64_positions(cast.inputs[0])


def _int64_positions(positions: oir.Value) -> oir.Value:
    shape = positions.shape
    if positions.dtype != oir.DataType.INT64 or shape is None or len(shape) != 2:
        raise NoMatch(
            f"positions '{positions.name}' are not int64 [batch, seq] (RotaryEmbedding's "
            "position_ids)"
        )
    return positions


def _cached_tables(cos_op: oir.Node, sin_op: oir.Node, head: int) -> Tables:
    """Tables for rows gathered from cached [max_position, head] cos/sin tables by position:
    their first halves, all their rows (the graph's tables already bound the positions)."""
    if cos_op.inputs[1] is not sin_op.inputs[1]:
        raise NoMatch("cos and sin are gathered at different positions")
    if any(op.attributes.get_int("axis", 0) != 0 for op in (cos_op, sin_op)):
        raise NoMatch("the cached tables are not gathered by row")
    halves = []
    for op in (cos_op, sin_op):
        table = constant_array(op.inputs[0])
        if table is None or table.ndim != 2 or table.shape[1] != head:
            raise NoMatch(f"table '{op.inputs[0].name}' is not a constant [positions, {head}]")
        if not np.array_equal(table[:, : head // 2], table[:, head // 2 :]):
            raise NoMatch(f"table '{op.inputs[0].name}' does not repeat each frequency")
        halves.append(table[:, : head // 2])
    positions = _int64_positions(cos_op.inputs[1])
    described = f"cos/sin gathered from '{cos_op.inputs[0].name}' at '{positions.name}'"
    return Tables(positions, halves[0], halves[1], cos_op.inputs[0].name, described)


def _stored(graph: oir.Graph, name: str, array: np.ndarray) -> tuple[oir.Value, str | None]:
    """The initializer `name` when the graph already holds it with these contents (an earlier
    site stored it), else a new one and the note recording it."""
    existing = graph.initializers.get(name)
    stored = existing is not None and existing.const_value is not None
    if stored and np.array_equal(existing.const_value.numpy(), array):
        return existing, None
    value = add_initializer(graph, name, array)
    return value, f"added initializer '{value.name}' {list(array.shape)}"


def _fuse(match: Match, context: RewriteContext) -> Rewrite:
    x = match.value("x")
    head = _head_size(x)
    _check_halves(match, head)
    config = context.config
    assert isinstance(config, FuseRotaryConfig)
    tables = _tables(match.value("cos"), match.value("sin"), head, config.max_position)
    dtype = x.dtype.numpy()
    cos, cos_note = _stored(context.graph, f"{tables.source}.cos_cache", tables.cos.astype(dtype))
    sin, sin_note = _stored(context.graph, f"{tables.source}.sin_cache", tables.sin.astype(dtype))
    rotary = oir.node(
        "RotaryEmbedding", [x, tables.positions, cos, sin], {"interleaved": 0}, domain=MICROSOFT
    )
    orphans = orphaned_producers(match.nodes)
    return Rewrite(
        (rotary,),
        {match.root.outputs[0]: rotary.outputs[0]},
        f"{len(match.nodes)} nodes rotate '{x.name}' (head {head}, rotate-half) by "
        f"{tables.described}, tables for positions < {len(tables.cos)}",
        removes=orphans,
        notes=tuple(note for note in (cos_note, sin_note) if note is not None),
    )


class FuseRotary(RuleSetPass):
    """Fuse the rotate-half rotary embedding into the runtime's one-pass kernel."""

    name = "fuse-rotary"
    summary = "replace x * cos + rotate_half(x) * sin by com.microsoft RotaryEmbedding"
    config_type = FuseRotaryConfig
    requires = (CONSTANT_WEIGHTS,)  # the inverse frequencies and slice bounds are constants
    rules = (Rule(RULE, ROTARY, build=_fuse, requires=Emits("RotaryEmbedding", MICROSOFT)),)
