"""Scaled dot-product attention -> onnxruntime's com.microsoft `MultiHeadAttention`.

Exporters write attention as its arithmetic, on 4-D [batch, heads, seq, head] tensors:

    Softmax(MatMul(Q, K^T) * scale + mask) @ V            (scale as Mul or Div, mask optional)

A runtime with a fused attention kernel runs that as one op without materializing the scores
in memory; a cost model sees one attention instead of two MatMuls and a Softmax.

MultiHeadAttention takes Q as [batch, seq, heads * head] with `num_heads`, K and V either the
same way or as [batch, heads, seq, head], and the mask as an additive `attention_bias` of shape
[batch or 1, heads or 1, seq, kv_seq]. So the pass also absorbs the head split around the core,
Transpose(Reshape(x, [B, S, N, H]), [0, 2, 1, 3]) (for K also the transpose to K^T), and the
head merge after it, when those nodes serve only the attention. Where they are missing or shared,
it adds the Transpose/Reshape that converts instead, and an Expand for a mask that broadcasts
over query positions ([B, 1, 1, T], the usual padding mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from passes.base import Pass, PassConfig, PassLog
from passes.rewrite import (
    NoMatch,
    constant_array,
    consumer_of,
    default_opset,
    leaked_value_reason,
    other_input,
    produced_by,
    replace_nodes,
    scalar_constant,
    scalar_operand,
    sole_consumer,
)

RULE = "attention"
_MICROSOFT = "com.microsoft"
# Targets that run com.microsoft MultiHeadAttention.
_FUSED_ATTENTION_TARGETS = frozenset({"onnxruntime"})
_HEADS_FIRST = (0, 2, 1, 3)  # [B, S, N, H] <-> [B, N, S, H]
_SWAP_LAST = (0, 1, 3, 2)  # K <-> K^T
_HEADS_FIRST_TRANSPOSED = (0, 2, 3, 1)  # [B, S, N, H] -> [B, N, H, S], K^T in one step
_ATTENTION_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})


@dataclass(frozen=True)
class FuseAttentionConfig(PassConfig):
    target: str = "onnxruntime"


@dataclass(frozen=True)
class _Core:
    """The matched 4-D attention: Q @ K^T, optional scale and mask, Softmax, @ V."""

    nodes: list[ir.Node]
    query: ir.Value  # [B, N, S, H]
    key_t: ir.Value  # [B, N, H, T]
    value: ir.Value  # [B, N, T, Hv]
    scale: float
    mask: ir.Value | None
    heads: int


@dataclass
class _Operand:
    """A MultiHeadAttention input: the value passed, the matched nodes it makes redundant, and
    the nodes to add to compute it."""

    value: ir.Value
    absorbed: list[ir.Node] = field(default_factory=list)
    added: list[ir.Node] = field(default_factory=list)


class FuseAttention(Pass):
    """Fuse attention into the runtime's attention op, which never materializes the scores."""

    name = "fuse-attention"
    summary = "replace Softmax(Q @ K^T * scale + mask) @ V by com.microsoft MultiHeadAttention"
    config_type = FuseAttentionConfig

    def run(self, model: ir.Model, log: PassLog) -> None:
        opset, target = default_opset(model), self.config.target
        for graph in model.graphs():
            for softmax in list(graph):
                if softmax.graph is not graph or not _is(softmax, "Softmax"):
                    continue
                probs = softmax.outputs[0]
                apply = consumer_of(probs, "MatMul")
                if apply is None or apply.inputs[0] is not probs:
                    continue  # not Softmax(...) @ V: not a site
                try:
                    core = _match_core(softmax, apply, opset)
                    if target not in _FUSED_ATTENTION_TARGETS:
                        raise NoMatch(f"target '{target}' declares no fused attention")
                except NoMatch as why:
                    log.skip([softmax, apply], rule=RULE, reason=str(why))
                    continue
                if _MICROSOFT not in model.opset_imports:
                    model.opset_imports[_MICROSOFT] = 1
                    log.changed_graph(rule=RULE, reason="imported opset com.microsoft 1")
                _fuse(core, log)


def _is(node: ir.Node, op_type: str) -> bool:
    return node.op_type == op_type and node.domain == ""


def _match_core(softmax: ir.Node, apply: ir.Node, opset: int) -> _Core:
    scores = softmax.inputs[0]
    if scores.shape is None or len(scores.shape) != 4:
        raise NoMatch("the Softmax input is not known to be 4-D [batch, heads, seq, kv_seq]")
    axis = softmax.attributes.get_int("axis", -1 if opset >= 13 else 1)
    if axis not in (-1, 3):
        raise NoMatch(f"Softmax runs over axis {axis}, not the last")
    mask, mask_add, product = None, produced_by(scores, "Add"), _scaled_product(scores)
    if mask_add is not None:
        for candidate in mask_add.inputs:
            product = _scaled_product(candidate)
            if product is not None:
                mask = other_input(mask_add, candidate)
                break
    if product is None:
        raise NoMatch("the Softmax input is not Q @ K^T (times a constant) (plus a mask)")
    matmul, scale_node, scale = product
    query, key_t, value = matmul.inputs[0], matmul.inputs[1], apply.inputs[1]
    nodes = [matmul, *filter(None, [scale_node, mask_add if mask else None]), softmax, apply]
    leak = leaked_value_reason(nodes, [apply.outputs[0]])
    if leak is not None:
        raise NoMatch(leak)
    heads = _heads(query, key_t, value)
    if mask is not None:
        _check_mask(mask, query, key_t, heads)
    return _Core(nodes, query, key_t, value, scale, mask, heads)


def _scaled_product(value: ir.Value) -> tuple[ir.Node, ir.Node | None, float] | None:
    """(MatMul, the scaling node or None, the scale) when `value` is MatMul(Q, K^T) times or
    divided by a constant."""
    node = value.producer()
    if node is None or node.domain != "":
        return None
    if node.op_type == "MatMul":
        return node, None, 1.0
    if node.op_type == "Mul" and (scaled := scalar_operand(node)) is not None:
        product, scale = scaled
    elif node.op_type == "Div" and (divisor := scalar_constant(node.inputs[1])):
        product, scale = node.inputs[0], 1.0 / divisor
    else:
        return None
    matmul = produced_by(product, "MatMul")
    return None if matmul is None else (matmul, node, scale)


def _heads(query: ir.Value, key_t: ir.Value, value: ir.Value) -> int:
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


def _check_mask(mask: ir.Value, query: ir.Value, key_t: ir.Value, heads: int) -> None:
    """NoMatch unless the additive mask can be `attention_bias` [B or 1, N or 1, S, T] (a mask
    with one row for all query positions gets expanded to S rows). Symbolic dims that shape
    inference could not relate to Q's and K's are taken to match, as exporters write them:
    onnxruntime rejects a mismatch when it runs rather than computing something else."""
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


def _same(first: int | ir.SymbolicDim, second: int | ir.SymbolicDim) -> bool:
    """Whether two dims are known to be equal: the same number or the same named symbol."""
    if isinstance(first, int) or isinstance(second, int):
        return first == second
    return first.value is not None and first.value == second.value


def _differ(first: int | ir.SymbolicDim, second: int | ir.SymbolicDim) -> bool:
    """Whether two dims are known to differ (both static, unequal)."""
    return isinstance(first, int) and isinstance(second, int) and first != second


def _fuse(core: _Core, log: PassLog) -> None:
    query = _query_operand(core.query)
    key, value = _key_split(core.key_t), _split_source(core.value, _HEADS_FIRST)
    split = key is not None and value is not None
    if key is None or value is None:  # MultiHeadAttention takes K and V in the same layout
        key, value = _key_heads_first(core.key_t), _Operand(core.value)
    operands = [query, key, value]
    inputs: list[ir.Value | None] = [query.value, key.value, value.value]
    if core.mask is not None:
        mask = _mask_operand(core.mask, core.query, query.value)
        operands.append(mask)
        inputs += [None, None, mask.value]  # no bias, no key_padding_mask
    attention = ir.node(
        "MultiHeadAttention",
        inputs,
        {"num_heads": core.heads, "scale": core.scale},
        domain=_MICROSOFT,
    )
    merged, replaced, after = _output(core, attention.outputs[0])
    old = [*core.nodes, *(node for operand in operands for node in operand.absorbed), *merged]
    new = [*(node for operand in operands for node in operand.added), attention, *after]
    layout = "[batch, seq, hidden]" if split else "[batch, heads, seq, head]"
    replace_nodes(
        log,
        old,
        new,
        {replaced: new[-1].outputs[0]},
        rule=RULE,
        reason=f"{len(old)} nodes compute {core.heads}-head attention (K and V as {layout})",
    )


def _split_source(heads_first: ir.Value, perm: tuple[int, ...]) -> _Operand | None:
    """The [B, S, N*H] value x when `heads_first` is Transpose(Reshape(x, [B, S, N, H]), perm)
    and both nodes serve only the attention."""
    transpose = _only_for_reader(heads_first, "Transpose")
    if transpose is None or _perm(transpose) != perm:
        return None
    reshape = _only_for_reader(transpose.inputs[0], "Reshape")
    if reshape is None or not _keeps_leading_dims(reshape, (3, 4)):
        return None
    return _Operand(reshape.inputs[0], [*_shape_computation(reshape), reshape, transpose])


def _shape_computation(reshape: ir.Node) -> list[ir.Node]:
    """The nodes computing `reshape`'s target shape for it alone, back to the Shape nodes that
    read tensors (exporters write x.size() as Shape/Gather/Unsqueeze/Concat); they go with it."""
    found: dict[ir.Node, None] = {}
    pending = list(reshape.inputs[1:])
    while pending:
        value = pending.pop()
        node = None if value is None else value.producer()
        if node is not None and node not in found and node.graph is reshape.graph:
            found[node] = None
            if not _is(node, "Shape"):
                pending.extend(node.inputs)

    def read_elsewhere(value: ir.Value) -> bool:
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


def _keeps_leading_dims(reshape: ir.Node, ranks: tuple[int, int]) -> bool:
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


def _perm(transpose: ir.Node) -> tuple[int, ...]:
    return tuple(transpose.attributes.get_ints("perm", ()))


def _shape_constant(values: list[int]) -> ir.Node:
    return ir.node("Constant", [], {"value": ir.tensor(np.array(values, dtype=np.int64))})


def _query_operand(query: ir.Value) -> _Operand:
    """Q as [B, S, N*H]: the head split's input, or Q transposed and reshaped."""
    split = _split_source(query, _HEADS_FIRST)
    if split is not None:
        return split
    transpose = ir.node("Transpose", [query], {"perm": list(_HEADS_FIRST)})
    shape = _shape_constant([0, 0, -1])
    reshape = ir.node("Reshape", [transpose.outputs[0], shape.outputs[0]])
    return _Operand(reshape.outputs[0], added=[transpose, shape, reshape])


def _key_split(key_t: ir.Value) -> _Operand | None:
    """K as [B, T, N*H], when its head split and the transpose to K^T serve only the attention:
    one Transpose [0, 2, 3, 1] or [0, 2, 1, 3] then [0, 1, 3, 2]."""
    split = _split_source(key_t, _HEADS_FIRST_TRANSPOSED)
    if split is not None:
        return split
    transpose = _transpose_to_key_t(key_t)
    inner = None if transpose is None else _split_source(transpose.inputs[0], _HEADS_FIRST)
    return None if inner is None else _Operand(inner.value, [*inner.absorbed, transpose])


def _key_heads_first(key_t: ir.Value) -> _Operand:
    """K as [B, N, T, H]: the input of the transpose to K^T, or K^T transposed back."""
    transpose = _transpose_to_key_t(key_t)
    if transpose is not None:
        return _Operand(transpose.inputs[0], [transpose])
    swap = ir.node("Transpose", [key_t], {"perm": list(_SWAP_LAST)})
    return _Operand(swap.outputs[0], added=[swap])


def _transpose_to_key_t(key_t: ir.Value) -> ir.Node | None:
    """The Transpose(K, [0, 1, 3, 2]) computing `key_t` for the attention alone."""
    transpose = _only_for_reader(key_t, "Transpose")
    return None if transpose is None or _perm(transpose) != _SWAP_LAST else transpose


def _only_for_reader(value: ir.Value, op_type: str) -> ir.Node | None:
    """The `op_type` node computing `value` when one node of the same graph reads it."""
    producer, reader = produced_by(value, op_type), sole_consumer(value)
    if producer is None or reader is None or reader.graph is not producer.graph:
        return None
    return producer


def _mask_operand(mask: ir.Value, query: ir.Value, flat_query: ir.Value) -> _Operand:
    """The mask as `attention_bias`: itself when it has a row per query position, else expanded
    to that (from one row, or from a row count shape inference could not tell). The row count
    comes from Q's shape when static, else from Shape(`flat_query`) at run time."""
    if _same(mask.shape[2], query.shape[2]):
        return _Operand(mask)
    rows = query.shape[2]
    if isinstance(rows, int):
        target = _shape_constant([1, 1, rows, 1])
        shape_nodes = [target]
    else:
        shape = ir.node("Shape", [flat_query])
        index = _shape_constant([1])
        picked = ir.node("Gather", [shape.outputs[0], index.outputs[0]], {"axis": 0})
        ones, one = _shape_constant([1, 1]), _shape_constant([1])
        target = ir.node(
            "Concat", [ones.outputs[0], picked.outputs[0], one.outputs[0]], {"axis": 0}
        )
        shape_nodes = [shape, index, picked, ones, one, target]
    expand = ir.node("Expand", [mask, target.outputs[0]])
    return _Operand(expand.outputs[0], added=[*shape_nodes, expand])


def _output(core: _Core, flat: ir.Value) -> tuple[list[ir.Node], ir.Value, list[ir.Node]]:
    """(the head-merge nodes absorbed, the value the fused output replaces, nodes to add after
    MultiHeadAttention): its [B, S, N*Hv] output takes over the head merge's output, or is
    reshaped and transposed back to the core's [B, N, S, Hv]."""
    context = core.nodes[-1].outputs[0]
    merged = _head_merge(context)
    if merged is not None:
        return merged, merged[-1].outputs[0], []
    shape = _shape_constant([0, 0, core.heads, -1])
    split = ir.node("Reshape", [flat, shape.outputs[0]])
    heads_first = ir.node("Transpose", [split.outputs[0]], {"perm": list(_HEADS_FIRST)})
    return [], context, [shape, split, heads_first]


def _head_merge(context: ir.Value) -> list[ir.Node] | None:
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
