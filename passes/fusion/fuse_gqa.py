"""fuse-gqa: causal grouped-query attention over a KV cache held in graph inputs and outputs ->
com.microsoft `GroupQueryAttention`, or `MultiHeadAttention` with past/present where the target
declares that and not the first (and each query head has its own K/V head); with no target (the
default) sites are only reported.

A decoder exported with its cache as graph I/O (`past_key_values.N.key|value` in,
`present.N.key|value` out) writes each layer's attention as

    present_k = Concat(past_k, K, axis=2)           present_v = Concat(past_v, V, axis=2)
    Softmax(Q @ Transpose(repeat_kv(present_k)) * scale + bias) @ repeat_kv(present_v)

on [batch, heads, seq, head] tensors, with repeat_kv = Reshape(Expand(Unsqueeze(x, 2))) giving
each query head its K/V head, Q and K rotated (fused or not), and `bias` the additive causal and
padding mask [batch, 1, seq, total]. GroupQueryAttention does all of it in one kernel: it takes
Q, K and V as [batch, seq, hidden], the past cache [batch, kv_heads, past, head], and returns
the output and the present cache [batch, kv_heads, total, head] — the layout and, as graph
outputs, the names `present.N.key|value` a generation loop feeds back. On the op's CPU
kernel the cache may grow by concatenation as here (past and present in separate buffers,
present = past + seq), so no fixed maximum length is needed.

Padding (checked on the op's CPU kernel). GroupQueryAttention reads row b's cache as its first
seqlens_k[b] + 1 slots and appends the new tokens after them: it assumes padding on the right.
Batches here are padded on the LEFT (zoo/builders/llama.py), so the form decoder exporters write
for this op, seqlens_k = ReduceSum(attention_mask) - 1 with the kernel's own causal mask and no
bias, is exact only without padding: for a left-padded row it attends to padding and writes the
new keys over real ones (outputs off by up to 2.0 in prefill, the cache by 4.0 after a decode
step, on random data). The emitted form is exact instead, with or without padding, in prefill
and decode: every slot of every row counts (seqlens_k = total - 1 for all rows,
total_sequence_length = the mask's length, both int32 and computed once per graph from
`attention_mask`'s shape), so the cache keeps the graph's layout; and the graph's own mask bias
goes in as `attention_bias` with causal=0, so the kernel hides exactly the keys the graph hides
(its causal mask would assume the bias is causal; with the bias alone, any additive mask is
kept). On the small test decoder the fused logits equal the unfused ones bit for bit, padding
positions included. At SmolLM2's shapes (9 heads over 3, head 64) the kernel took 1.3-1.7 ms
for a 128-token prefill and 0.13-0.26 ms for a decode step with or without the bias, causal=0
or 1: no difference above the noise of a loaded 2-core machine. The inputs must be consistent
(the mask as long as past + new tokens, as the graph's I/O says): with a shorter mask the
unfused graph broadcasts the bias where the kernel reads it by position.

The rotary embedding is not folded into the kernel (do_rotary stays 0): GroupQueryAttention
would number positions from each row's first slot, which left padding breaks; Q and K come in
rotated. A com.microsoft RotaryEmbedding on a head split (fuse-rotary's output) is moved onto
the split's [batch, seq, hidden] input, so no layout conversion is left around it; a head split
serving only the attention is absorbed, as is the head merge after it; anything else gets a
Transpose/Reshape to and from the layouts the kernel takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from passes.contracts import CONSTANT_WEIGHTS
from passes.engine.match import Match
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Anchored, Emits, Rewrite, RewriteContext, Rule
from passes.rewrite import (
    NoMatch,
    constant_array,
    consumer_of,
    orphaned_producers,
    produced_by,
    scalar_constant,
    sole_consumer,
)
from passes.target_capabilities import TargetedPassConfig

MICROSOFT = "com.microsoft"
KV_CACHE = "kv-cache"  # the declared variant: past/present cache inputs and outputs
BIAS = "bias"  # MultiHeadAttention's declared variant for an additive attention bias
MASK = "attention_mask"  # the graph input [batch, total] the sequence lengths come from
_HEADS_FIRST = (0, 2, 1, 3)  # [B, S, N, H] <-> [B, N, S, H]
_SWAP_LAST = (0, 1, 3, 2)  # K -> K^T
# The op's CPU kernel refuses other head sizes when it runs ("head_size must be a multiple of 8").
_GQA_HEAD_MULTIPLE = 8
_TYPES = frozenset({oir.DataType.FLOAT, oir.DataType.FLOAT16, oir.DataType.BFLOAT16})


@dataclass(frozen=True)
class FuseGqaConfig(TargetedPassConfig):
    """Only `target`: whose GroupQueryAttention / MultiHeadAttention declarations decide."""


@dataclass(frozen=True)
class _Cache:
    """One side of the cache: present = Concat(past, new) on the sequence axis, then repeated to
    the query heads by `group` (1: not repeated); `nodes` are the Concat and the repeat."""

    past: oir.Value  # [B, kv, P, H], a graph input
    new: oir.Value  # [B, kv, S, H]
    present: oir.Value  # [B, kv, T, H]
    group: int
    nodes: tuple[oir.Node, ...]


@dataclass(frozen=True)
class _Site:
    """A matched attention over the cache, with its sizes checked."""

    query: oir.Value  # [B, N, S, H]
    key: _Cache
    value: _Cache
    bias: oir.Value  # [B or 1, 1 or N, S, T]
    scale: float
    heads: int
    kv_heads: int
    head_size: int
    context: oir.Value  # [B, N, S, H], probs @ V


@dataclass(frozen=True)
class _Operand:
    """A kernel input as [batch, seq, heads * head]: the value passed, the nodes it makes
    redundant, and the nodes added to compute it."""

    value: oir.Value
    absorbed: tuple[oir.Node, ...] = ()
    added: tuple[oir.Node, ...] = ()


def _is(node: oir.Node | None, op_type: str, domain: str = "") -> bool:
    return node is not None and node.op_type == op_type and node.domain == domain


def _perm(node: oir.Node) -> tuple[int, ...]:
    return tuple(node.attributes.get_ints("perm", ()))


def _softmax_site(node: oir.Node) -> tuple[oir.Node, ...] | None:
    return (node,)


def _match(site: tuple[oir.Node, ...], context: RewriteContext) -> Match:
    """The attention ending in Softmax `site[0]` and its reader, or NoMatch with the reason."""
    softmax = site[0]
    axis = softmax.attributes.get_int("axis", -1 if context.opset >= 13 else 1)
    if axis not in (-1, 3):
        raise NoMatch(f"Softmax runs over axis {axis}, not the last")
    add = produced_by(softmax.inputs[0], "Add")
    if add is None:
        raise NoMatch("the Softmax input is no scores plus a mask bias (causal attention adds one)")
    query, key, scale, score_nodes, bias = _scores_plus_bias(add)
    probs_reader = sole_consumer(softmax.outputs[0])
    if not _is(probs_reader, "MatMul") or probs_reader.inputs[0] is not softmax.outputs[0]:
        raise NoMatch("the probabilities are not read by one MatMul with the values")
    value = _cache(probs_reader.inputs[1], "value")
    found = _sized(query, key, value, bias, scale, probs_reader.outputs[0])
    nodes = (*key.nodes, *value.nodes, *score_nodes, add, softmax, probs_reader)
    outputs = (found.context, key.present, value.present)
    return Match(nodes, outputs, {"site": found})


def _scores_plus_bias(
    add: oir.Node,
) -> tuple[oir.Value, _Cache, float, tuple[oir.Node, ...], oir.Value]:
    """`_scores` of the Add input that is the scores, and the other input: the mask bias."""
    reasons = []
    for scores, bias in (add.inputs, reversed(add.inputs)):
        try:
            return (*_scores(scores), bias)
        except NoMatch as why:
            reasons.append(str(why))
    raise NoMatch(reasons[0])


def _scores(scores: oir.Value) -> tuple[oir.Value, _Cache, float, tuple[oir.Node, ...]]:
    """(Q, the key cache, the scale, the nodes) of scores = Q @ K^T, times or divided by a
    constant or not; NoMatch otherwise."""
    scaling, scale = None, 1.0
    if produced_by(scores, "Div") or produced_by(scores, "Mul"):
        scaling = scores.producer()
        constants = [scalar_constant(operand) for operand in scaling.inputs]
        if scaling.op_type == "Div" and constants[1] is not None and constants[1] != 0:
            scores, scale = scaling.inputs[0], 1.0 / constants[1]
        elif scaling.op_type == "Mul" and None in constants and constants != [None, None]:
            index = constants.index(None)
            scores, scale = scaling.inputs[index], constants[1 - index]
        else:
            raise NoMatch(
                f"the scores are scaled by {scaling.op_type} with no one-element constant"
            )
    product = produced_by(scores, "MatMul")
    transpose = None if product is None else produced_by(product.inputs[1], "Transpose")
    if transpose is None or _perm(transpose) != _SWAP_LAST:
        raise NoMatch("the scores are not Q @ Transpose(K, [0, 1, 3, 2])")
    key = _cache(transpose.inputs[0], "key")
    nodes = (transpose, product) + ((scaling,) if scaling is not None else ())
    return product.inputs[0], key, scale, nodes


def _cache(repeated: oir.Value, kind: str) -> _Cache:
    """The cache side whose present, perhaps repeated over the query heads, is `repeated`."""
    present, group, nodes = repeated, 1, ()
    reshape = produced_by(repeated, "Reshape")
    expand = None if reshape is None else produced_by(reshape.inputs[0], "Expand")
    unsqueeze = None if expand is None else produced_by(expand.inputs[0], "Unsqueeze")
    if unsqueeze is not None:
        axes = constant_array(unsqueeze.inputs[1]) if len(unsqueeze.inputs) > 1 else None
        copies = constant_array(expand.inputs[1])
        fits = copies is not None and copies.size == 5 and copies[[0, 1, 3, 4]].tolist() == [1] * 4
        if axes is None or axes.ravel().tolist() != [2] or not fits:
            raise NoMatch(f"the {kind}s are not repeated as Expand(Unsqueeze(x, [2]), [1,1,g,1,1])")
        present, group, nodes = unsqueeze.inputs[0], int(copies[2]), (unsqueeze, expand, reshape)
    concat = produced_by(present, "Concat")
    sequence_axis = concat is not None and concat.attributes.get_int("axis", 0) in (2, -2)
    if not sequence_axis or len(concat.inputs) != 2:
        raise NoMatch(f"the {kind}s are not Concat(past, new) along the sequence axis")
    past = concat.inputs[0]
    if not past.is_graph_input() or past.is_initializer():
        raise NoMatch(f"the past {kind}s '{past.name}' are not a graph input")
    return _Cache(past, concat.inputs[1], present, group, (concat, *nodes))


def _sized(
    query: oir.Value,
    key: _Cache,
    value: _Cache,
    bias: oir.Value,
    scale: float,
    context: oir.Value,
) -> _Site:
    """The site with its head counts and head size, checked: static, one K/V head per `group`
    query heads on both sides, and a [B or 1, 1 or N, S, T] bias."""
    shapes = [_typed(v).shape for v in (query, key.past, key.new, value.past, value.new)]
    if any(shape is None or len(shape) != 4 for shape in shapes):
        raise NoMatch("Q and the past and new K/V are not all known to be 4-D")
    heads, head_size = shapes[0][1], shapes[0][3]
    kv_heads = shapes[1][1]
    sizes = [heads, head_size, kv_heads]
    if not all(isinstance(size, int) for size in sizes):
        raise NoMatch("the head counts and head size are not static")
    if any(shape[1] != kv_heads or shape[3] != head_size for shape in shapes[1:]):
        raise NoMatch("past and new keys and values differ in K/V heads or head size")
    if key.group != value.group or key.group * kv_heads != heads:
        raise NoMatch(
            f"{heads} query heads, {kv_heads} K/V heads repeated {key.group} and "
            f"{value.group} times"
        )
    dtype = _typed(query).dtype
    if dtype not in _TYPES or any(v.dtype != dtype for v in (key.past, value.past)):
        raise NoMatch("the attention is not float, float16 or bfloat16 throughout")
    mask = bias.shape
    if mask is None or len(mask) != 4 or mask[1] not in (1, heads):
        raise NoMatch(f"the mask bias '{bias.name}' is not [batch, 1 or heads, seq, total]")
    return _Site(query, key, value, bias, scale, heads, kv_heads, head_size, context)


def _typed(value: oir.Value) -> oir.Value:
    """`value`, or for a RotaryEmbedding output that ONNX's shape inference left untyped, the
    input it has the type and shape of."""
    rotary = produced_by(value, "RotaryEmbedding", MICROSOFT)
    return rotary.inputs[0] if value.shape is None and rotary is not None else value


def _check_declared(context: RewriteContext, site: _Site, variants: tuple[str, ...]) -> None:
    declared = context.declaration
    assert declared is not None, "a com.microsoft op is emitted only as a target declares it"
    dtype = np.dtype(site.key.past.dtype.numpy()).name
    if dtype not in declared.dtypes:
        raise NoMatch(
            f"target '{context.target}' declares {declared.qualified_name} for "
            f"{', '.join(sorted(declared.dtypes))}, not {dtype}"
        )
    missing = [variant for variant in variants if variant not in declared.variants]
    if missing:
        raise NoMatch(
            f"target '{context.target}' declares {declared.qualified_name} without the "
            f"{', '.join(repr(variant) for variant in missing)} variant"
        )


def _constant(array: np.ndarray) -> oir.Node:
    return oir.node("Constant", [], {"value": oir.tensor(array)})


def _mask(graph: oir.Graph) -> oir.Value:
    for value in graph.inputs:
        if value.name == MASK:
            return value
    raise NoMatch(f"the graph has no input '{MASK}' to take the sequence lengths from")


@dataclass(frozen=True)
class _Lengths:
    """GroupQueryAttention's seqlens_k (int32 [batch]) and total_sequence_length (int32
    scalar), and the nodes added to compute them (none when reused)."""

    seqlens: oir.Value
    total: oir.Value
    added: tuple[oir.Node, ...] = ()


def _sequence_lengths(graph: oir.Graph, mask: oir.Value) -> _Lengths:
    """Those of a GroupQueryAttention already built from `mask`, or new nodes computing
    total = int32(Shape(mask)[1]) and seqlens_k = Expand(total - 1, Shape(mask)[:1])."""
    for node in graph:
        built = _is(node, "GroupQueryAttention", MICROSOFT) and len(node.inputs) > 6
        if built and _length_of(node.inputs[6]) is mask:
            return _Lengths(node.inputs[5], node.inputs[6])
    shape = oir.node("Shape", [mask])
    index = _constant(np.array(1, np.int64))
    length = oir.node("Gather", [shape.outputs[0], index.outputs[0]], {"axis": 0})
    total = oir.node("Cast", [length.outputs[0]], {"to": oir.DataType.INT32})
    start, end = _constant(np.array([0], np.int64)), _constant(np.array([1], np.int64))
    batch = oir.node("Slice", [shape.outputs[0], start.outputs[0], end.outputs[0]])
    one = _constant(np.array(1, np.int32))
    last = oir.node("Sub", [total.outputs[0], one.outputs[0]])
    seqlens = oir.node("Expand", [last.outputs[0], batch.outputs[0]])
    nodes = (shape, index, length, total, start, end, batch, one, last, seqlens)
    return _Lengths(seqlens.outputs[0], total.outputs[0], nodes)


def _length_of(total: oir.Value | None) -> oir.Value | None:
    """The mask whose length `total` is, when it is int32(Gather(Shape(mask), 1)) as built here."""
    cast = produced_by(total, "Cast")
    gather = None if cast is None else produced_by(cast.inputs[0], "Gather")
    shape = None if gather is None else produced_by(gather.inputs[0], "Shape")
    return None if shape is None else shape.inputs[0]


def _head_split(value: oir.Value) -> tuple[oir.Value, tuple[oir.Node, ...]] | None:
    """(x, the Transpose and Reshape) when `value` = Transpose(Reshape(x, [B, S, N, H]),
    [0, 2, 1, 3]) with x [B, S, N*H], each read only by the next."""
    transpose = produced_by(value, "Transpose")
    if transpose is None or _perm(transpose) != _HEADS_FIRST:
        return None
    reshape = produced_by(transpose.inputs[0], "Reshape")
    if reshape is None or sole_consumer(reshape.outputs[0]) is not transpose:
        return None
    source, split = reshape.inputs[0], reshape.outputs[0].shape
    if source.shape is None or split is None or (len(source.shape), len(split)) != (3, 4):
        return None
    heads, head = split[2], split[3]
    kept = all(_same(source.shape[axis], split[axis]) for axis in (0, 1))
    if not (kept and isinstance(heads, int) and isinstance(head, int)):
        return None
    return (source, (reshape, transpose)) if source.shape[2] == heads * head else None


def _same(first: int | oir.SymbolicDim, second: int | oir.SymbolicDim) -> bool:
    if isinstance(first, int) or isinstance(second, int):
        return first == second
    return first.value is not None and first.value == second.value


def _flat(value: oir.Value) -> _Operand:
    """`value` [B, N, S, H] as [B, S, N*H]: when the attention alone reads it, its head split's
    input, or a RotaryEmbedding of a head split moved onto the split's input; else converted."""
    alone = sole_consumer(value) is not None  # the attention's node, the only reader
    split = _head_split(value) if alone else None
    if split is not None:
        return _Operand(split[0], split[1])
    rotary = produced_by(value, "RotaryEmbedding", MICROSOFT) if alone else None
    split = None if rotary is None else _head_split(rotary.inputs[0])
    if split is not None and sole_consumer(rotary.inputs[0]) is rotary:
        moved = oir.node(
            "RotaryEmbedding",
            [split[0], *rotary.inputs[1:]],
            {name: attribute.value for name, attribute in rotary.attributes.items()},
            domain=MICROSOFT,
        )
        return _Operand(moved.outputs[0], (*split[1], rotary), (moved,))
    transpose = oir.node("Transpose", [value], {"perm": list(_HEADS_FIRST)})
    shape = _constant(np.array([0, 0, -1], np.int64))
    reshape = oir.node("Reshape", [transpose.outputs[0], shape.outputs[0]])
    return _Operand(reshape.outputs[0], added=(transpose, shape, reshape))


def _head_merge(context: oir.Value) -> tuple[oir.Node, oir.Node] | None:
    """(Transpose, Reshape) of Reshape(Transpose(context, [0, 2, 1, 3]), [B, S, N*H])."""
    transpose = sole_consumer(context)
    if not _is(transpose, "Transpose") or _perm(transpose) != _HEADS_FIRST:
        return None
    reshape = consumer_of(transpose.outputs[0], "Reshape")
    if reshape is None or transpose.outputs[0].is_graph_output():
        return None
    merged, split = reshape.outputs[0].shape, transpose.outputs[0].shape
    if merged is None or split is None or (len(split), len(merged)) != (4, 3):
        return None
    kept = all(_same(split[axis], merged[axis]) for axis in (0, 1))
    return (transpose, reshape) if kept else None


def _rewrite(
    match: Match,
    kernel: oir.Node,
    operands: list[_Operand],
    reason: str,
    before: tuple[oir.Node, ...] = (),
) -> Rewrite:
    """The Rewrite putting `kernel` (output, present_key, present_value), after `before` and its
    operands' added nodes, in place of the site, the nodes its operands absorb, the head merge
    after it when that serves it alone (else the output is converted back to [B, N, S, H]),
    and every node left feeding nothing."""
    site: _Site = match.captures["site"]
    removed = [*match.nodes, *(node for operand in operands for node in operand.absorbed)]
    added = [*before, *(node for operand in operands for node in operand.added)]
    merge = _head_merge(site.context)
    if merge is not None and merge[0] in orphaned_producers([*removed, merge[1]]):
        removed.append(merge[1])
        replaced, output, after = merge[1].outputs[0], kernel.outputs[0], ()
    else:
        shape = _constant(np.array([0, 0, site.heads, site.head_size], np.int64))
        split = oir.node("Reshape", [kernel.outputs[0], shape.outputs[0]])
        back = oir.node("Transpose", [split.outputs[0]], {"perm": list(_HEADS_FIRST)})
        replaced, output, after = site.context, back.outputs[0], (shape, split, back)
    outputs = {
        replaced: output,
        site.key.present: kernel.outputs[1],
        site.value.present: kernel.outputs[2],
    }
    beyond = [*removed[len(match.nodes) :], *orphaned_producers(removed)]
    return Rewrite((*added, kernel, *after), outputs, reason, removes=tuple(beyond))


def _describe(site: _Site, kernel: str) -> str:
    return (
        f"{kernel}: {site.heads} query heads over {site.kv_heads} K/V heads of "
        f"{site.head_size}, scale {site.scale:.6g}, cache '{site.key.past.name}' -> "
        f"'{site.key.present.name}', mask bias '{site.bias.name}'"
    )


def _group_query_attention(match: Match, context: RewriteContext) -> Rewrite:
    site: _Site = match.captures["site"]
    _check_declared(context, site, (KV_CACHE,))
    if site.head_size % _GQA_HEAD_MULTIPLE:
        raise NoMatch(
            f"GroupQueryAttention takes head sizes that are multiples of {_GQA_HEAD_MULTIPLE}, "
            f"not {site.head_size}"
        )
    lengths = _sequence_lengths(context.graph, _mask(context.graph))
    operands = [_flat(site.query), _flat(site.key.new), _flat(site.value.new)]
    kernel = oir.node(
        "GroupQueryAttention",
        [
            *(operand.value for operand in operands),
            site.key.past,
            site.value.past,
            lengths.seqlens,
            lengths.total,
            None,  # cos_cache: Q and K come in rotated
            None,  # sin_cache
            None,  # position_ids
            site.bias,
        ],
        {
            "num_heads": site.heads,
            "kv_num_heads": site.kv_heads,
            "scale": site.scale,
            "causal": 0,  # the mask bias is the whole mask, causal part included
        },
        domain=MICROSOFT,
        num_outputs=3,
    )
    return _rewrite(
        match, kernel, operands, _describe(site, "GroupQueryAttention"), before=lengths.added
    )


def _multi_head_attention(match: Match, context: RewriteContext) -> Rewrite:
    site: _Site = match.captures["site"]
    _check_declared(context, site, (KV_CACHE, BIAS))
    if site.kv_heads != site.heads:
        raise NoMatch(
            f"MultiHeadAttention keeps one K/V head per query head; the cache has "
            f"{site.kv_heads} K/V heads for {site.heads} query heads"
        )
    operands = [_flat(site.query), _flat(site.key.new), _flat(site.value.new)]
    kernel = oir.node(
        "MultiHeadAttention",
        [
            *(operand.value for operand in operands),
            None,  # bias (of the projections)
            None,  # key_padding_mask: the mask bias carries it
            site.bias,
            site.key.past,
            site.value.past,
        ],
        {"num_heads": site.heads, "scale": site.scale},
        domain=MICROSOFT,
        num_outputs=3,
    )
    return _rewrite(match, kernel, operands, _describe(site, "MultiHeadAttention"))


SITE = Anchored("Softmax", _softmax_site, _match)


class FuseGqa(RuleSetPass):
    """Fuse decoder attention over the KV cache into the runtime's grouped-query kernel."""

    name = "fuse-gqa"
    summary = (
        "replace causal attention over a past/present KV cache by com.microsoft "
        "GroupQueryAttention (or MultiHeadAttention)"
    )
    config_type = FuseGqaConfig
    requires = (CONSTANT_WEIGHTS,)  # the scale and the repeat counts are read as constants
    rules = (
        Rule(
            "group-query-attention",
            SITE,
            build=_group_query_attention,
            requires=Emits("GroupQueryAttention", MICROSOFT),
        ),
        Rule(
            "multi-head-attention-kv-cache",
            SITE,
            build=_multi_head_attention,
            requires=Emits("MultiHeadAttention", MICROSOFT),
        ),
    )
