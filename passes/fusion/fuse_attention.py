"""Scaled dot-product attention -> com.microsoft `MultiHeadAttention`, for a target that declares
it (with the "bias" variant where a mask is added); with no target (the default) sites are
only reported, as ONNX has no such op.

Exporters write attention as its arithmetic, on 4-D [batch, heads, seq, head] tensors:

    Softmax(MatMul(Q, K^T) * scale + mask) @ V            (scale as Mul or Div, mask optional)

A runtime with a fused attention kernel runs that as one op without materializing the scores
in memory; a cost model sees one attention instead of two MatMuls and a Softmax.

MultiHeadAttention takes Q as [batch, seq, heads * head] with `num_heads`, K and V either the
same way or as [batch, heads, seq, head], and the mask as an additive `attention_bias` of shape
[batch or 1, heads or 1, seq, kv_seq]. So the build also absorbs the head split around the core,
Transpose(Reshape(x, [B, S, N, H]), [0, 2, 1, 3]) (for K also the transpose to K^T), and the
head merge after it, when those nodes serve only the attention. Where they are missing or shared,
it adds the Transpose/Reshape that converts instead, and an Expand for a mask that broadcasts
over query positions ([B, 1, 1, T], the usual padding mask). The core is the rule's pattern; the
layouts around it are the build's, as they decide what to add rather than whether to fuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from passes.contracts import CONSTANT_WEIGHTS
from passes.engine.match import Match
from passes.engine.patterns import AnyValue, Const, OneOf, Op
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Emits, Rewrite, RewriteContext, Rule
from passes.rewrite import NoMatch, constant_array, consumer_of, produced_by, sole_consumer
from passes.target_capabilities import TargetedPassConfig

MICROSOFT = "com.microsoft"
_MASK_VARIANT = "bias"  # the declared variant for an additive attention bias
_HEADS_FIRST = (0, 2, 1, 3)  # [B, S, N, H] <-> [B, N, S, H]
_SWAP_LAST = (0, 1, 3, 2)  # K <-> K^T
_HEADS_FIRST_TRANSPOSED = (0, 2, 3, 1)  # [B, S, N, H] -> [B, N, H, S], K^T in one step
_ATTENTION_TYPES = frozenset({oir.DataType.FLOAT, oir.DataType.FLOAT16, oir.DataType.BFLOAT16})


@dataclass(frozen=True)
class FuseAttentionConfig(TargetedPassConfig):
    """Only `target`: whose MultiHeadAttention declaration decides what is fused."""


def _a_scale(array: np.ndarray) -> str | None:
    """Why a constant cannot be the attention scale (MultiHeadAttention reads scale 0 as "the
    default, 1/sqrt(head)"), or None."""
    if array.size != 1:
        return f"has shape {list(array.shape)}, not one element"
    return "is 0" if float(array.reshape(())) == 0 else None


_PRODUCT = Op("MatMul", inputs=(AnyValue("query"), AnyValue("key_t")))
_SCALED = OneOf(
    (
        Op(
            frozenset({"Mul", "Div"}),
            inputs=(_PRODUCT, Const("scale", role="scale", check=_a_scale)),
            capture="scaling",
        ),
        _PRODUCT,
    )
)
# Softmax(Q @ K^T, times or divided by a constant, plus a mask) @ V; scale and mask optional.
ATTENTION = Op(
    "MatMul",
    inputs=(
        Op(
            "Softmax",
            inputs=(OneOf((Op("Add", inputs=(_SCALED, AnyValue("mask"))), _SCALED)),),
            capture="softmax",
        ),
        AnyValue("value"),
    ),
)


@dataclass(frozen=True)
class _Core:
    """The matched 4-D attention, checked: its inputs, scale and mask, and its output."""

    query: oir.Value  # [B, N, S, H]
    key_t: oir.Value  # [B, N, H, T]
    value: oir.Value  # [B, N, T, Hv]
    scale: float
    mask: oir.Value | None
    heads: int
    context: oir.Value  # [B, N, S, Hv]


@dataclass(frozen=True)
class _Operand:
    """A MultiHeadAttention input: the value passed, the nodes it makes redundant beyond the
    core, and the nodes to add to compute it."""

    value: oir.Value
    absorbed: tuple[oir.Node, ...] = ()
    added: tuple[oir.Node, ...] = ()


def _core(match: Match, opset: int) -> _Core:
    """The site as a `_Core`; NoMatch unless its shapes, Softmax axis and element type are
    those MultiHeadAttention computes. The axis is checked here, not by the pattern: its default
    depends on the opset of the site's graph, which a node check does not see."""
    softmax = match.node("softmax")
    scores = softmax.inputs[0]
    if scores.shape is None or len(scores.shape) != 4:
        raise NoMatch("the Softmax input is not known to be 4-D [batch, heads, seq, kv_seq]")
    axis = softmax.attributes.get_int("axis", -1 if opset >= 13 else 1)
    if axis not in (-1, 3):
        raise NoMatch(f"Softmax runs over axis {axis}, not the last")
    query, key_t, value = match.value("query"), match.value("key_t"), match.value("value")
    heads = _heads(query, key_t, value)
    mask = match.value("mask")
    if mask is not None:
        _check_mask(mask, query, key_t, heads)
    return _Core(query, key_t, value, _scale(match), mask, heads, match.root.outputs[0])


def _scale(match: Match) -> float:
    """The factor the scores are multiplied by: the Mul's constant, 1 / the Div's, or 1."""
    if match.value("scale") is None:
        return 1.0
    scale = float(match.constant("scale").reshape(()))
    return 1.0 / scale if match.node("scaling").op_type == "Div" else scale


def _check_declared(core: _Core, context: RewriteContext) -> None:
    """NoMatch unless the target's MultiHeadAttention declaration covers this core: its element
    type, and the attention bias variant when the core adds a mask."""
    declared = context.declaration
    assert declared is not None, "a com.microsoft op is emitted only as a target declares it"
    dtype = np.dtype(core.query.dtype.numpy()).name  # float32, float16 or bfloat16 (_heads)
    if dtype not in declared.dtypes:
        raise NoMatch(
            f"target '{context.target}' declares {declared.qualified_name} for "
            f"{', '.join(sorted(declared.dtypes))}, not {dtype}"
        )
    if core.mask is not None and _MASK_VARIANT not in declared.variants:
        raise NoMatch(
            f"target '{context.target}' declares {declared.qualified_name} without the "
            f"'{_MASK_VARIANT}' variant the mask '{core.mask.name}' needs"
        )


def _heads(query: oir.Value, key_t: oir.Value, value: oir.Value) -> int:
    """The number of heads, checking that Q, K^T and V are 4-D with the same static head count
    and batch sizes that may be equal."""
    shapes = [operand.shape for operand in (query, key_t, value)]
    if any(shape is None or len(shape) != 4 for shape in shapes):
        raise NoMatch("Q, K^T and V are not all known to be 4-D [batch, heads, seq, head]")
    heads = shapes[0][1]
    if not isinstance(heads, int) or any(shape[1] != heads for shape in shapes):
        raise NoMatch("Q, K and V do not share a static number of heads")
    if any(_differ(shape[0], shapes[0][0]) for shape in shapes):
        raise NoMatch("Q, K and V have different batch sizes")
    if query.dtype not in _ATTENTION_TYPES:
        raise NoMatch(f"MultiHeadAttention takes float, float16 or bfloat16, not {query.dtype}")
    return heads


def _check_mask(mask: oir.Value, query: oir.Value, key_t: oir.Value, heads: int) -> None:
    """NoMatch unless the additive mask can be `attention_bias` [B or 1, N or 1, S, T] (a mask
    with one row for all query positions gets expanded to S rows). Symbolic dims that shape
    inference could not relate to Q's and K's are taken to match, as exporters write them: a
    MultiHeadAttention kernel checks the bias's shape when it runs, so a mismatch fails there
    rather than computing something else."""
    shape = mask.shape
    if shape is None or len(shape) != 4:
        raise NoMatch(f"mask '{mask.name}' is not known to be 4-D")
    batch, mask_heads, rows, keys = shape
    fits = (
        (batch == 1 or not _differ(batch, query.shape[0]))
        and mask_heads in (1, heads)
        and (rows == 1 or not _differ(rows, query.shape[2]))
        and (_same(keys, key_t.shape[3]) or (keys != 1 and not _differ(keys, key_t.shape[3])))
    )
    if not fits:
        raise NoMatch(
            f"mask '{mask.name}' of shape {shape} does not fit [batch or 1, heads or 1, "
            "seq or 1, kv_seq]"
        )


def _same(first: int | oir.SymbolicDim, second: int | oir.SymbolicDim) -> bool:
    """Whether two dims are known to be equal: the same number or the same named symbol."""
    if isinstance(first, int) or isinstance(second, int):
        return first == second
    return first.value is not None and first.value == second.value


def _differ(first: int | oir.SymbolicDim, second: int | oir.SymbolicDim) -> bool:
    """Whether two dims are known to differ (both static, unequal)."""
    return isinstance(first, int) and isinstance(second, int) and first != second


def _fuse(match: Match, context: RewriteContext) -> Rewrite:
    """MultiHeadAttention on the core's Q, K and V in the layouts it takes: the head splits'
    inputs where those serve only the attention, else converted; the head merge absorbed, or
    the output converted back."""
    core = _core(match, context.opset)
    _check_declared(core, context)
    query = _query_operand(core.query)
    key, value = _key_split(core.key_t), _split_source(core.value, _HEADS_FIRST)
    split = key is not None and value is not None
    if key is None or value is None:  # MultiHeadAttention takes K and V in the same layout
        key, value = _key_heads_first(core.key_t), _Operand(core.value)
    operands = [query, key, value]
    inputs: list[oir.Value | None] = [query.value, key.value, value.value]
    if core.mask is not None:
        mask = _mask_operand(core.mask, core.query, query.value)
        operands.append(mask)
        inputs += [None, None, mask.value]  # no bias, no key_padding_mask
    attention = oir.node(
        "MultiHeadAttention",
        inputs,
        {"num_heads": core.heads, "scale": core.scale},
        domain=MICROSOFT,
    )
    merged, replaced, after = _output(core, attention.outputs[0])
    removes = (*(node for operand in operands for node in operand.absorbed), *merged)
    new = (*(node for operand in operands for node in operand.added), attention, *after)
    layout = "[batch, seq, hidden]" if split else "[batch, heads, seq, head]"
    return Rewrite(
        new,
        {replaced: new[-1].outputs[0]},
        f"{len(match.nodes) + len(removes)} nodes compute {core.heads}-head attention "
        f"(K and V as {layout})",
        removes=removes,
    )


def _is(node: oir.Node, op_type: str) -> bool:
    return node.op_type == op_type and node.domain == ""


def _split_source(heads_first: oir.Value, perm: tuple[int, ...]) -> _Operand | None:
    """The [B, S, N*H] value x when `heads_first` is Transpose(Reshape(x, [B, S, N, H]), perm)
    and both nodes serve only the attention."""
    transpose = _only_for_reader(heads_first, "Transpose")
    if transpose is None or _perm(transpose) != perm:
        return None
    reshape = _only_for_reader(transpose.inputs[0], "Reshape")
    if reshape is None or not _keeps_leading_dims(reshape, (3, 4)):
        return None
    return _Operand(reshape.inputs[0], (*_shape_computation(reshape), reshape, transpose))


def _shape_computation(reshape: oir.Node) -> list[oir.Node]:
    """The nodes computing `reshape`'s target shape for it alone, back to the Shape nodes that
    read tensors (exporters write x.size() as Shape/Gather/Unsqueeze/Concat); they go with it."""
    found: dict[oir.Node, None] = {}
    pending = list(reshape.inputs[1:])
    while pending:
        value = pending.pop()
        node = None if value is None else value.producer()
        if node is not None and node not in found and node.graph is reshape.graph:
            found[node] = None
            if not _is(node, "Shape"):
                pending.extend(node.inputs)

    def read_elsewhere(value: oir.Value) -> bool:
        return value.is_graph_output() or any(
            use.node not in found and (use.node, use.idx) != (reshape, 1) for use in value.uses()
        )

    shrinking = True
    while shrinking:  # drop what is also read elsewhere, until nothing more is
        shrinking = False
        for node in list(found):
            if any(read_elsewhere(value) for value in node.outputs):
                del found[node]
                shrinking = True
    return list(found)


def _keeps_leading_dims(reshape: oir.Node, ranks: tuple[int, int]) -> bool:
    """Whether `reshape` goes between the given ranks keeping dims 0 and 1 ([B, S, D] <->
    [B, S, N, H]), so only the last axis is split or the last two merged. Dims count as kept when
    the shape input copies them (0) or the inferred shapes show them equal."""
    source, result = reshape.inputs[0], reshape.outputs[0]
    if source is None or source.shape is None or result.shape is None:
        return False
    if (len(source.shape), len(result.shape)) != ranks:
        return False
    target = constant_array(reshape.inputs[1]) if len(reshape.inputs) > 1 else None
    copies = (
        target is not None
        and target.size == ranks[1]
        and not reshape.attributes.get_int("allowzero", 0)
    )
    return all(
        (copies and target[axis] == 0) or _same(source.shape[axis], result.shape[axis])
        for axis in (0, 1)
    )


def _perm(transpose: oir.Node) -> tuple[int, ...]:
    return tuple(transpose.attributes.get_ints("perm", ()))


def _shape_constant(values: list[int]) -> oir.Node:
    return oir.node("Constant", [], {"value": oir.tensor(np.array(values, dtype=np.int64))})


def _query_operand(query: oir.Value) -> _Operand:
    """Q as [B, S, N*H]: the head split's input, or Q transposed and reshaped."""
    split = _split_source(query, _HEADS_FIRST)
    if split is not None:
        return split
    transpose = oir.node("Transpose", [query], {"perm": list(_HEADS_FIRST)})
    shape = _shape_constant([0, 0, -1])
    reshape = oir.node("Reshape", [transpose.outputs[0], shape.outputs[0]])
    return _Operand(reshape.outputs[0], added=(transpose, shape, reshape))


def _key_split(key_t: oir.Value) -> _Operand | None:
    """K as [B, T, N*H], when its head split and the transpose to K^T serve only the attention:
    one Transpose [0, 2, 3, 1] or [0, 2, 1, 3] then [0, 1, 3, 2]."""
    split = _split_source(key_t, _HEADS_FIRST_TRANSPOSED)
    if split is not None:
        return split
    transpose = _transpose_to_key_t(key_t)
    inner = None if transpose is None else _split_source(transpose.inputs[0], _HEADS_FIRST)
    return None if inner is None else _Operand(inner.value, (*inner.absorbed, transpose))


def _key_heads_first(key_t: oir.Value) -> _Operand:
    """K as [B, N, T, H]: the input of the transpose to K^T, or K^T transposed back."""
    transpose = _transpose_to_key_t(key_t)
    if transpose is not None:
        return _Operand(transpose.inputs[0], (transpose,))
    swap = oir.node("Transpose", [key_t], {"perm": list(_SWAP_LAST)})
    return _Operand(swap.outputs[0], added=(swap,))


def _transpose_to_key_t(key_t: oir.Value) -> oir.Node | None:
    """The Transpose(K, [0, 1, 3, 2]) computing `key_t` for the attention alone."""
    transpose = _only_for_reader(key_t, "Transpose")
    return None if transpose is None or _perm(transpose) != _SWAP_LAST else transpose


def _only_for_reader(value: oir.Value, op_type: str) -> oir.Node | None:
    """The `op_type` node computing `value` when one node of the same graph reads it."""
    producer, reader = produced_by(value, op_type), sole_consumer(value)
    if producer is None or reader is None or reader.graph is not producer.graph:
        return None
    return producer


def _mask_operand(mask: oir.Value, query: oir.Value, flat_query: oir.Value) -> _Operand:
    """The mask as `attention_bias`: itself when it has a row per query position, else expanded
    to that (from one row, or from a row count shape inference could not tell). The row count
    comes from Q's shape when static, else from Shape(`flat_query`) at run time."""
    if _same(mask.shape[2], query.shape[2]):
        return _Operand(mask)
    rows = query.shape[2]
    if isinstance(rows, int):
        target = _shape_constant([1, 1, rows, 1])
        shape_nodes: tuple[oir.Node, ...] = (target,)
    else:
        shape = oir.node("Shape", [flat_query])
        index = _shape_constant([1])
        picked = oir.node("Gather", [shape.outputs[0], index.outputs[0]], {"axis": 0})
        ones, one = _shape_constant([1, 1]), _shape_constant([1])
        target = oir.node(
            "Concat", [ones.outputs[0], picked.outputs[0], one.outputs[0]], {"axis": 0}
        )
        shape_nodes = (shape, index, picked, ones, one, target)
    expand = oir.node("Expand", [mask, target.outputs[0]])
    return _Operand(expand.outputs[0], added=(*shape_nodes, expand))


def _output(core: _Core, flat: oir.Value) -> tuple[list[oir.Node], oir.Value, list[oir.Node]]:
    """(the head-merge nodes absorbed, the value the fused output replaces, nodes to add after
    MultiHeadAttention): its [B, S, N*Hv] output takes over the head merge's output, or is
    reshaped and transposed back to the core's [B, N, S, Hv]."""
    merged = _head_merge(core.context)
    if merged is not None:
        return merged, merged[-1].outputs[0], []
    shape = _shape_constant([0, 0, core.heads, -1])
    split = oir.node("Reshape", [flat, shape.outputs[0]])
    heads_first = oir.node("Transpose", [split.outputs[0]], {"perm": list(_HEADS_FIRST)})
    return [], core.context, [shape, split, heads_first]


def _head_merge(context: oir.Value) -> list[oir.Node] | None:
    """The nodes of Reshape(Transpose(context, [0, 2, 1, 3]), [B, S, N*Hv]) ending in the
    Reshape, when they serve only the attention (the transposed value's Shape may feed the
    Reshape's target shape)."""
    transpose = sole_consumer(context)
    if transpose is None or not _is(transpose, "Transpose") or _perm(transpose) != _HEADS_FIRST:
        return None
    reshape = consumer_of(transpose.outputs[0], "Reshape")
    if reshape is None or not (reshape.graph is transpose.graph is context.producer().graph):
        return None
    if not _keeps_leading_dims(reshape, (4, 3)):
        return None
    shape_nodes = _shape_computation(reshape)
    readers = set(transpose.outputs[0].consumers()) - {reshape}
    if not readers <= set(shape_nodes) or transpose.outputs[0].is_graph_output():
        return None
    return [transpose, *shape_nodes, reshape]


class FuseAttention(RuleSetPass):
    """Fuse attention into the runtime's attention op, which never materializes the scores."""

    name = "fuse-attention"
    summary = "replace Softmax(Q @ K^T * scale + mask) @ V by com.microsoft MultiHeadAttention"
    config_type = FuseAttentionConfig
    requires = (CONSTANT_WEIGHTS,)  # the scale is read as a constant
    rules = (
        Rule("attention", ATTENTION, build=_fuse, requires=Emits("MultiHeadAttention", MICROSOFT)),
    )
