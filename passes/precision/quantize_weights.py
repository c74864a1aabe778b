"""quantize-weights: weight-only 4- or 8-bit quantization of MatMul weights, in blocks along K.

Decoding a language model reads every weight once per token, so its speed is bounded by the
bytes of the weights; storing them in 4 or 8 bits with a float scale per block of 32 values
cuts that traffic 6x or 3.5x, while activations stay float (no calibration is needed).

A weight is a MatMul's constant float32 input B [K, N], or a constant table [N, K] read through
Transpose(perm=[1, 0]), the form of an output projection tied to the token embedding; [N, K]
is exactly MatMulNBits' layout, so the tied table needs no transposing. Each is quantized by
round-to-nearest in blocks along K (`passes.precision.blockwise` says how scales are picked)
and emitted as com.microsoft MatMulNBits where the target declares it with the `bits=N`
variant, otherwise as a blocked DequantizeLinear (opset 21) of int4/int8 levels feeding the
MatMul, when the model imports opset 21 or later. Where neither is possible the pass refuses
before changing anything.

The output projection (the MatMul writing `logits`, or reading a table a Gather also reads) is
read on every decode step and decides the next token, so it gets its own width, `head_bits`
(8 by default, as llama.cpp keeps it at Q8_0). Any other reader of a quantized weight, the
embedding Gather of a tied table above all, reads the weight's rounded values, so the embedding
and the projection see the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx_ir as oir

from ir.errors import AsicperfError
from ir.logit_drift import VOCABULARY_OUTPUT_NAME
from ir.node_ids import describe_node, node_id
from passes.audit import ChangeKind
from passes.base import Pass, PassLog
from passes.contracts import CONSTANT_WEIGHTS
from passes.layer_scope import LayerScopeConfig, check_op_scope
from passes.option_range import bounded
from passes.precision.blockwise import BlockQuantized, quantize_blocks
from passes.rewrite import (
    add_initializer,
    constant_array,
    default_opset,
    produced_by,
)
from passes.target_capabilities import TargetedPassConfig, can_emit

QUANTIZABLE = ("MatMul",)
BITS = (4, 8)
MICROSOFT = "com.microsoft"
MIN_BLOCK = 16  # MatMulNBits' smallest block
# Blocked DequantizeLinear (its `block_size`) and int4 arrived in opset 21.
BLOCKED_DEQUANTIZE_OPSET = 21
_TRANSPOSE_2D = [1, 0]


@dataclass(frozen=True)
class QuantizeWeightsConfig(LayerScopeConfig, TargetedPassConfig):
    """`bits`: 4 or 8. `block`: values per scale along K, a power of two >= 16. `symmetric`:
    no zero points (levels centred on 2^(bits-1)), or a zero point per block.
    `accuracy_level`:
    MatMulNBits' lowest precision for its float input (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8).
    4 by default: CPU kernels then quantize A to int8 per block, as llama.cpp does for its dot
    products, and for 8-bit weights only that path is fast (at 0 one 8-bit 49152x576 projection
    took 532 ms a call against 7.8 ms, dequantizing the whole weight each time). `head_bits`:
    the output projection's width (0: kept FP32). `include` / `exclude`: op types or node ids
    (n12) to quantize / to leave in float."""

    bits: int = bounded(4, low=4, high=8, note="4 or 8")
    block: int = bounded(32, low=MIN_BLOCK, note="a power of two")
    symmetric: bool = True
    accuracy_level: int = bounded(4, low=0, high=4, note="0: unset, 4: int8 input")
    head_bits: int = bounded(8, low=0, high=8, note="0: FP32, 4 or 8")
    include: tuple[str, ...] = QUANTIZABLE
    exclude: tuple[str, ...] = ()

    def layer_op_types(self) -> frozenset[str]:
        return frozenset(QUANTIZABLE)

    def milder(self) -> QuantizeWeightsConfig | None:
        """4-bit weights at 8 bits: what a drift budget tries before keeping a layer FP32."""
        return replace(self, bits=8) if self.bits == 4 else None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bits not in BITS:
            raise ValueError(f"bits={self.bits}: expected 4 or 8")
        if self.head_bits not in (0, *BITS):
            raise ValueError(f"head_bits={self.head_bits}: expected 0 (keep FP32), 4 or 8")
        if self.block < MIN_BLOCK or self.block & (self.block - 1):
            raise ValueError(
                f"block={self.block}: expected a power of two >= {MIN_BLOCK} (16, 32, 64, 128, ...)"
            )
        check_op_scope(self.include, self.exclude, QUANTIZABLE)


@dataclass(frozen=True)
class _Weight:
    """A MatMul's weight as its table [N, K]: the constant holding it, and the Transpose the
    MatMul reads it through when the constant is already [N, K] (else it is [K, N])."""

    source: oir.Value
    table: np.ndarray
    transpose: oir.Node | None


@dataclass(frozen=True)
class _Site:
    """A MatMul to quantize, its weight, the width it gets, and whether it is the output
    projection."""

    node: oir.Node
    weight: _Weight
    bits: int
    head: bool


class QuantizeWeights(Pass):
    name = "quantize-weights"
    summary = "store MatMul weights in 4 or 8 bits per block along K (MatMulNBits or blocked DQ)"
    config_type = QuantizeWeightsConfig
    # The DequantizeLinear of constant levels it may leave is a constant subgraph again.
    invalidates = (CONSTANT_WEIGHTS,)

    def run(self, model: oir.Model, log: PassLog) -> None:
        config = self.config
        assert isinstance(config, QuantizeWeightsConfig)
        sites = self._sites(model.graph, log)
        if not sites:
            return
        opset = default_opset(model)
        widths = dict.fromkeys(site.bits for site in sites)  # in graph order: bits first
        nbits = {bits: _emits_nbits(config, bits, opset) for bits in widths}
        model_before = _initializer_bytes(model.graph)
        totals: list[_Storage] = []
        for source, group in _by_source(sites).items():
            bits = group[0].bits
            quantized = quantize_blocks(group[0].weight.table, bits, config.block, config.symmetric)
            if nbits[bits]:
                if MICROSOFT not in model.opset_imports:
                    model.opset_imports[MICROSOFT] = 1
                    log.changed_graph(rule="matmul-nbits", reason=f"imported opset {MICROSOFT} 1")
                totals.append(_emit_nbits(model.graph, source, group, quantized, config, log))
            else:
                totals.append(_emit_dequantize(model.graph, source, group, quantized, log))
        weights_before = sum(item.bytes_before for item in totals)
        weights_after = sum(item.bytes_after for item in totals)
        log.changed_graph(
            rule="totals",
            reason=(
                f"{len(totals)} weights quantized: {weights_before} B -> {weights_after} B "
                f"({weights_before / max(weights_after, 1):.2f}x smaller); model initializers "
                f"{model_before} B -> {_initializer_bytes(model.graph)} B"
            ),
        )

    def _sites(self, graph: oir.Graph, log: PassLog) -> list[_Site]:
        """The MatMuls to quantize, each with its width; skips recorded. Raises for a block
        larger than a weight's K, before any change."""
        config = self.config
        assert isinstance(config, QuantizeWeightsConfig)
        sites = []
        for node in list(graph):
            if node.domain != "" or node.op_type not in QUANTIZABLE:
                continue
            found = self._excluded(node) or _weight_of(node)
            if isinstance(found, str):
                log.skip([node], rule="quantize", reason=f"{describe_node(node)} {found}")
                continue
            head = _is_output_projection(node, found)
            bits = config.head_bits if head else config.bits
            if bits == 0:
                reason = "not quantized: the output projection is kept FP32 (head_bits=0)"
                log.skip([node], rule="quantize", reason=f"{describe_node(node)} {reason}")
                continue
            k = found.table.shape[1]
            if config.block > k:
                raise AsicperfError(
                    f"quantize-weights: block={config.block} is larger than K={k} of "
                    f"{describe_node(node)}; use block <= {k} or exclude={node_id(node)}"
                )
            sites.append(_Site(node, found, bits, head))
        return sites

    def _excluded(self, node: oir.Node) -> str | None:
        config = self.config
        assert isinstance(config, QuantizeWeightsConfig)
        identifier = node_id(node)
        for name in (node.op_type, identifier):
            if name in config.exclude:
                return f"not quantized: excluded by exclude={name}"
        if node.op_type not in config.include and identifier not in config.include:
            return f"not quantized: neither {node.op_type} nor {identifier} is in include"
        if not config.in_scope(node):
            return "not quantized: outside the layer scope (kept FP32)"
        return None


def _weight_of(node: oir.Node) -> _Weight | str:
    """The MatMul's weight, or why it has none to quantize (the end of a skip reason)."""
    weight = node.inputs[1]  # MatMul's typing makes the other input float32 as well
    transpose = produced_by(weight, "Transpose")
    if transpose is not None and _is_constant_initializer(transpose.inputs[0]):
        if list(transpose.attributes.get_ints("perm", _TRANSPOSE_2D)) != _TRANSPOSE_2D:
            return f"not quantized: weight '{weight.name}' is a Transpose other than perm=[1, 0]"
        source = transpose.inputs[0]
    else:
        source, transpose = weight, None
    if not _is_constant_initializer(source):
        name = "" if weight is None else weight.name
        return (
            f"not quantized: weight '{name}' is not a constant initializer (nor a Transpose of one)"
        )
    array = constant_array(source)
    if array is None or array.dtype != np.float32 or array.ndim != 2:
        what = "no value" if array is None else f"{array.dtype} of rank {array.ndim}"
        return f"not quantized: weight '{source.name}' is {what}, not a float32 matrix"
    table = array if transpose is not None else array.T
    return _Weight(source, np.ascontiguousarray(table), transpose)


def _is_constant_initializer(value: oir.Value | None) -> bool:
    return value is not None and value.is_initializer() and not value.is_graph_input()


def _is_output_projection(node: oir.Node, weight: _Weight) -> bool:
    """The MatMul writing the `logits` output, or reading a table an embedding Gather reads."""
    output = node.outputs[0]
    if output.is_graph_output() and output.name == VOCABULARY_OUTPUT_NAME:
        return True
    return weight.transpose is not None and any(
        reader.op_type == "Gather" and reader.domain == "" for reader, _ in weight.source.uses()
    )


def _by_source(sites: Sequence[_Site]) -> dict[oir.Value, list[_Site]]:
    """The sites per constant, which is quantized once for all of them: at the output
    projection's width when one of them is that projection."""
    groups: dict[oir.Value, list[_Site]] = {}
    for site in sites:
        groups.setdefault(site.weight.source, []).append(site)
    for source, group in groups.items():
        heads = [site for site in group if site.head]
        if heads:
            groups[source] = [
                _Site(site.node, site.weight, heads[0].bits, site.head) for site in group
            ]
    return groups


def _emits_nbits(config: QuantizeWeightsConfig, bits: int, opset: int) -> bool:
    """True: MatMulNBits; False: blocked DequantizeLinear + MatMul; neither: a one-line error."""
    declared = can_emit(config.target, "MatMulNBits", MICROSOFT, opset)
    if declared.allowed and declared.declaration is not None:
        if f"bits={bits}" in declared.declaration.variants:
            return True
        why_not = f"target '{config.target}' declares {MICROSOFT}.MatMulNBits without bits={bits}"
    else:
        why_not = declared.why_not
    if (
        opset >= BLOCKED_DEQUANTIZE_OPSET
        and can_emit(config.target, "DequantizeLinear", "", opset).allowed
    ):
        return False
    option = "head_bits" if bits != config.bits else "bits"
    raise AsicperfError(
        f"quantize-weights {option}={bits}: {why_not}, and the model's opset {opset} has no "
        f"blocked DequantizeLinear (needs {BLOCKED_DEQUANTIZE_OPSET})"
    )


@dataclass(frozen=True)
class _Storage:
    """A weight's bytes before and after, for the totals."""

    bytes_before: int
    bytes_after: int


def _describe(source: oir.Value, quantized: BlockQuantized, bytes_after: int) -> str:
    """The audit's figures for one weight."""
    table = source.const_value.numpy()
    original = table if table.shape == (quantized.n, quantized.k) else table.T
    error = np.abs(quantized.dequantized() - original)
    scheme = (
        f"symmetric (scale = signed max / -{2 ** (quantized.bits - 1)})"
        if quantized.zero_points is None
        else f"asymmetric (scale = range / {2**quantized.bits - 1}, zero point per block)"
    )
    return (
        f"weight '{source.name}' [K={quantized.k}, N={quantized.n}]: {quantized.bits} bits, "
        f"block {quantized.block}, {scheme}; rounding error max {error.max():.6g} "
        f"mean {error.mean():.6g}; {table.nbytes} B -> {bytes_after} B"
    )


def _emit_nbits(
    graph: oir.Graph,
    source: oir.Value,
    group: Sequence[_Site],
    quantized: BlockQuantized,
    config: QuantizeWeightsConfig,
    log: PassLog,
) -> _Storage:
    """Each MatMul of the group -> one MatMulNBits over shared packed levels and scales."""
    name = source.name or "weight"
    inputs = [
        add_initializer(graph, f"{name}_q{quantized.bits}", quantized.packed_levels()),
        add_initializer(graph, f"{name}_scales", quantized.scales),
    ]
    zero_points = quantized.packed_zero_points()
    if zero_points is not None:
        inputs.append(add_initializer(graph, f"{name}_zero_points", zero_points))
    stored = sum(value.const_value.nbytes for value in inputs)
    before = source.const_value.nbytes
    others = _other_readers(source, group)
    kept = before if others else 0  # the other readers keep a float table
    reason = _describe(source, quantized, stored + kept)
    attributes = {
        "K": quantized.k,
        "N": quantized.n,
        "bits": quantized.bits,
        "block_size": quantized.block,
        "accuracy_level": config.accuracy_level,
    }
    for site in group:
        fused = oir.node(
            "MatMulNBits", [site.node.inputs[0], *inputs], attributes, domain=MICROSOFT
        )
        fused.outputs[0].dtype = oir.DataType.FLOAT
        fused.outputs[0].shape = site.node.outputs[0].shape
        _replace(graph, site.node, fused, log, f"{describe_node(site.node)}: {reason}")
    _remove_unread_transposes(graph, group, log)
    if others:
        rounded = quantized.dequantized()
        rounded = rounded if source.const_value.shape == rounded.shape else rounded.T
        source.const_value = oir.tensor(np.ascontiguousarray(rounded), name=source.name)
        log.changed(
            ChangeKind.WEIGHTS,
            others,
            rule="shared-weight",
            reason=(
                f"'{name}' now holds its {quantized.bits}-bit rounded values: its other readers "
                f"and the quantized {', '.join(node_id(s.node) for s in group)} see the same "
                "weights"
            ),
        )
    else:
        graph.initializers.pop(source.name, None)
    return _Storage(before, stored + kept)


def _replace(graph: oir.Graph, old: oir.Node, new: oir.Node, log: PassLog, reason: str) -> None:
    """`new` in place of the one-output node `old`, taking over its output's name and readers.
    (Not `passes.rewrite.replace_nodes`: its ordering of the old nodes by position costs time
    quadratic in the graph's size, minutes for a decoder's hundreds of MatMuls.)"""
    graph.insert_after(old, new)
    output, name = old.outputs[0], old.outputs[0].name
    output.replace_all_uses_with(new.outputs[0], replace_graph_outputs=True)
    output.name = None
    new.outputs[0].name = name
    log.added(new, rule="matmul-nbits", reason=reason, replaces=[old])
    log.removed([old], rule="matmul-nbits", reason=reason)
    graph.remove(old, safe=True)


def _other_readers(source: oir.Value, group: Sequence[_Site]) -> list[oir.Node]:
    """The nodes that will still read `source` once the group's MatMuls are quantized: any
    but those MatMuls and the Transposes only they read."""
    matmuls = {site.node for site in group}

    def stays(reader: oir.Node) -> bool:
        if reader in matmuls:
            return False
        if reader not in {site.weight.transpose for site in group}:
            return True
        output = reader.outputs[0]
        return output.is_graph_output() or any(r not in matmuls for r, _ in output.uses())

    return [reader for reader in dict.fromkeys(r for r, _ in source.uses()) if stays(reader)]


def _remove_unread_transposes(graph: oir.Graph, group: Sequence[_Site], log: PassLog) -> None:
    for transpose in {site.weight.transpose for site in group} - {None}:
        assert transpose is not None
        output = transpose.outputs[0]
        if not output.uses() and not output.is_graph_output():
            log.removed(
                [transpose],
                rule="matmul-nbits",
                reason="MatMulNBits reads the [N, K] table as stored",
            )
            graph.remove(transpose, safe=True)


def _emit_dequantize(
    graph: oir.Graph,
    source: oir.Value,
    group: Sequence[_Site],
    quantized: BlockQuantized,
    log: PassLog,
) -> _Storage:
    """The constant -> blocked DequantizeLinear of its levels, read by all its readers: the
    quantized MatMuls (directly or through their Transpose) and any other, which thus see the
    same rounded weights."""
    name = source.name or "weight"
    data, zero_point = quantized.dequantize_linear_data()
    scales = quantized.scales
    k_first = group[0].weight.transpose is None  # the constant is [K, N]: blocks on axis 0
    if k_first:
        data, scales = data.T, scales.T
        zero_point = None if zero_point is None else zero_point.T
    inputs = [
        add_initializer(graph, f"{name}_q{quantized.bits}", np.ascontiguousarray(data)),
        add_initializer(graph, f"{name}_scales", np.ascontiguousarray(scales)),
    ]
    if zero_point is not None:
        inputs.append(
            add_initializer(graph, f"{name}_zero_points", np.ascontiguousarray(zero_point))
        )
    stored = sum(value.const_value.nbytes for value in inputs)
    before = source.const_value.nbytes
    dequantize = oir.node(
        "DequantizeLinear",
        inputs,
        {"axis": 0 if k_first else 1, "block_size": quantized.block},
    )
    dequantize.outputs[0].name = f"{name}_dq"
    dequantize.outputs[0].dtype = oir.DataType.FLOAT
    dequantize.outputs[0].shape = source.shape
    readers = list(dict.fromkeys(reader for reader, _ in source.uses()))
    graph.insert_before(next(node for node in graph if node in readers), dequantize)
    reason = _describe(source, quantized, stored)
    log.added(dequantize, rule="dequantize-linear", reason=reason)
    source.replace_all_uses_with(dequantize.outputs[0])
    graph.initializers.pop(source.name, None)
    matmuls = [site.node for site in group]
    log.changed(
        ChangeKind.REWIRED,
        list(dict.fromkeys([*readers, *matmuls])),
        rule="dequantize-linear",
        reason=f"read '{name}' through a blocked DequantizeLinear of {quantized.bits}-bit levels",
    )
    return _Storage(before, stored)


def _initializer_bytes(graph: oir.Graph) -> int:
    return sum(
        value.const_value.nbytes
        for value in graph.initializers.values()
        if value.const_value is not None
    )
