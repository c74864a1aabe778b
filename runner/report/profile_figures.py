"""A profile's figures: each layer's time, work and place under the roofline, and the rollups.

A layer's work is the sum of its IR nodes' FLOPs from the op table, on the model as compiled
(after the pipeline, with the batch bound), and the bytes that cross its boundary: a fused layer
keeps its intermediates in registers or cache, so counting each node's inputs and outputs would
judge a Conv+BatchNormalization+Add+Relu as memory-bound on traffic that never reaches memory
(the per-node sum stays where it is smaller: a Gather reads only the rows it picks). Its
roofline time is what the device's ceilings allow for that work: max(FLOPs / compute peak,
bytes / memory bandwidth). The larger term is its bound (compute when the arithmetic intensity is at
or past the ridge point), the roofline time over the measured time its fraction of the roofline,
and the difference the time lost against it. The compute peak is the one of the precision the
target's profiler says the layer ran in (`detail["precision"]`: OpenVINO runs a float32 model's
layers in bf16 by default), else of the dtype its heaviest node computes in (read through a
DequantizeLinear in the same layer), so a quantized convolution is judged against the int8
ceiling, not the FP32 one. A layer whose target computes it with fewer operations than the op
table counts says by how much (`detail["flop_scale"]`: tvm's Winograd convolutions do 16 of the
direct convolution's 36 multiply-adds), and is judged on the operations it does.

A layer whose node ids are unknown, or with a node the op table has no cost for, gets no such
figures: a partial sum would flatter it. Its time still counts in every total.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import onnx_ir as oir

from ir.memory import value_bytes
from ir.node_ids import node_id, origin_ids, provenance
from ir.ops import node_cost
from runner.results.op import RooflineRecord
from runner.results.profile import ProfileGroup, ProfileLayer
from targets.profiling import LayerTiming

UNMAPPED = "(unmapped)"  # the group of layers whose profiler names map to no IR node
IMPORTED = "(imported)"  # the pass group of layers made only of the model's own nodes
_COMPUTE_DTYPES = {
    oir.DataType.INT8: "int8",
    oir.DataType.UINT8: "int8",
    oir.DataType.FLOAT16: "fp16",
    oir.DataType.BFLOAT16: "bf16",
}
# A profiler's runtime precision names (OpenVINO's short ones, numpy's) -> roofline dtypes.
_RUNTIME_PRECISIONS = {
    **dict.fromkeys(("f32", "float32"), "fp32"),
    **dict.fromkeys(("bf16", "bfloat16"), "bf16"),
    **dict.fromkeys(("f16", "float16"), "fp16"),
    **dict.fromkeys(("i8", "u8", "int8", "uint8"), "int8"),
}


@dataclass(frozen=True)
class PieceLayer:
    """A layer as timed in one piece of the executable (its segment's index)."""

    piece: int
    timing: LayerTiming


@dataclass(frozen=True)
class _Work:
    flops: int
    nbytes: int
    dtype: str


def profile_layers(
    timed: Sequence[PieceLayer], model: oir.Model, roofline: RooflineRecord
) -> tuple[ProfileLayer, ...]:
    """Every layer's record, slowest first; `model` is the model as compiled."""
    nodes = {node_id(node): node for node in model.graph}
    medians = [statistics.median(layer.timing.times_ms) for layer in timed]
    total = sum(medians)
    records = [
        _layer(layer, median, total, [nodes.get(i) for i in layer.timing.nodes], roofline)
        for layer, median in zip(timed, medians, strict=True)
    ]
    return tuple(sorted(records, key=lambda record: -record.time_ms))


def _layer(
    layer: PieceLayer,
    time_ms: float,
    total_ms: float,
    nodes: list[oir.Node | None],
    roofline: RooflineRecord,
) -> ProfileLayer:
    timing = layer.timing
    known = [node for node in nodes if node is not None]
    work = _work(
        nodes,
        _RUNTIME_PRECISIONS.get(timing.detail.get("precision", "")),
        float(timing.detail.get("flop_scale", 1.0)),
    )
    seconds = time_ms / 1e3
    roof_ms = None if work is None else _roofline_ms(work, roofline)
    rates = work is not None and seconds > 0
    return ProfileLayer(
        name=timing.name,
        kind=timing.kind,
        piece=layer.piece,
        nodes=timing.nodes,
        original_nodes=_distinct(i for node in known for i in origin_ids(node)),
        op_types=_distinct(node.op_type for node in known),
        passes=_distinct(str(record["pass"]) for record in map(provenance, known) if record),
        time_ms=time_ms,
        spread_ms=max(timing.times_ms) - min(timing.times_ms),
        share=time_ms / total_ms if total_ms > 0 else 0.0,
        flops=None if work is None else work.flops,
        nbytes=None if work is None else work.nbytes,
        gflops=work.flops / seconds / 1e9 if rates and work else None,
        gbps=work.nbytes / seconds / 1e9 if rates and work else None,
        dtype=None if work is None else work.dtype,
        bound=None if roof_ms is None or work is None else _bound(work, roofline),
        roofline_ms=roof_ms,
        roofline_fraction=roof_ms / time_ms if roof_ms is not None and time_ms > 0 else None,
        lost_ms=None if roof_ms is None else time_ms - roof_ms,
        detail=dict(timing.detail),
    )


def _work(
    nodes: list[oir.Node | None], runtime_dtype: str | None, flop_scale: float = 1.0
) -> _Work | None:
    """The nodes' summed FLOPs (times `flop_scale`, for an algorithm that does fewer than the
    op table counts), the fewer of their summed bytes and the bytes crossing the layer's
    boundary, and the dtype it ran in (`runtime_dtype`, else the heaviest node's); None without
    nodes, or when a node is unknown or has no cost."""
    if not nodes or None in nodes:
        return None
    costs = [(node, node_cost(node)) for node in nodes if node is not None]
    if any(cost is None for _, cost in costs):
        return None
    heaviest, _ = max(costs, key=lambda pair: pair[1].flops if pair[1] else 0)
    summed = sum(cost.bytes_moved for _, cost in costs if cost)
    boundary = _boundary_bytes([node for node, _ in costs])
    return _Work(
        flops=round(flop_scale * sum(cost.flops for _, cost in costs if cost)),
        nbytes=summed if boundary is None else min(summed, boundary),
        dtype=runtime_dtype or _compute_dtype(heaviest, {node for node, _ in costs}),
    )


def _boundary_bytes(nodes: list[oir.Node]) -> int | None:
    """Bytes of the values the layer reads from outside it (weights included) and of those it
    produces for outside it, each once; None when a size is unknown."""
    inside = set(nodes)
    read = {
        value
        for node in nodes
        for value in node.inputs
        if value is not None and value.producer() not in inside
    }
    written = {
        value
        for node in nodes
        for value in node.outputs
        if value.name
        and (value.is_graph_output() or any(user not in inside for user in value.consumers()))
    }
    sizes = [value_bytes(value) for value in read | written]
    return None if None in sizes else math.ceil(sum(size for size in sizes if size is not None))


def _compute_dtype(node: oir.Node, layer: set[oir.Node]) -> str:
    """What the node's arithmetic runs in: its first input's type (int8 for 8-bit integers), or
    the quantized type a DequantizeLinear of the same layer reads to produce it: a runtime that
    fuses DequantizeLinear+Conv+QuantizeLinear into one layer runs an int8 convolution."""
    first = node.inputs[0] if node.inputs else None
    producer = None if first is None else first.producer()
    if producer in layer and producer is not None and producer.op_type == "DequantizeLinear":
        first = producer.inputs[0]
    dtype = None if first is None else first.dtype
    return _COMPUTE_DTYPES.get(dtype, "fp32") if dtype is not None else "fp32"


def _ceilings(work: _Work, roofline: RooflineRecord) -> tuple[float, float] | None:
    """(compute GFLOP/s of the work's dtype, memory GB/s), None when either is unknown."""
    compute = roofline.compute_gflops.get(work.dtype)
    bandwidth = roofline.bandwidth_gbs
    if compute is None or bandwidth is None or compute.value <= 0 or bandwidth.value <= 0:
        return None
    return compute.value, bandwidth.value


def _roofline_ms(work: _Work, roofline: RooflineRecord) -> float | None:
    ceilings = _ceilings(work, roofline)
    if ceilings is None:
        return None
    compute, bandwidth = ceilings
    return max(work.flops / compute, work.nbytes / bandwidth) / 1e9 * 1e3


def _bound(work: _Work, roofline: RooflineRecord) -> str | None:
    """Compute when the work's arithmetic intensity reaches the ridge point."""
    ceilings = _ceilings(work, roofline)
    if ceilings is None:
        return None
    compute, bandwidth = ceilings
    return "compute" if work.flops * bandwidth >= work.nbytes * compute > 0 else "memory"


def _distinct(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def op_type_key(layer: ProfileLayer) -> str:
    """The layer's op-type combination ("Conv+Relu"), or UNMAPPED."""
    return "+".join(layer.op_types) if layer.nodes else UNMAPPED


def pass_key(layer: ProfileLayer) -> str:
    """The passes that created the layer's nodes, IMPORTED for the model's own, or UNMAPPED."""
    if not layer.nodes:
        return UNMAPPED
    return "+".join(layer.passes) if layer.passes else IMPORTED


def rollup(
    layers: Sequence[ProfileLayer], key: Callable[[ProfileLayer], str]
) -> tuple[ProfileGroup, ...]:
    """The layers grouped by `key`, slowest group first. A group's roofline figures are over
    its layers that have one (None when none has)."""
    groups: dict[str, list[ProfileLayer]] = {}
    for layer in layers:
        groups.setdefault(key(layer), []).append(layer)
    total = sum(layer.time_ms for layer in layers)
    records = [_group(name, members, total) for name, members in groups.items()]
    return tuple(sorted(records, key=lambda group: -group.time_ms))


def _group(key: str, layers: list[ProfileLayer], total_ms: float) -> ProfileGroup:
    time_ms = sum(layer.time_ms for layer in layers)
    judged = [layer for layer in layers if layer.roofline_ms is not None]
    roof_ms = sum(layer.roofline_ms or 0.0 for layer in judged) if judged else None
    judged_ms = sum(layer.time_ms for layer in judged)
    by_bound: dict[str, float] = {}
    for layer in judged:
        by_bound[str(layer.bound)] = by_bound.get(str(layer.bound), 0.0) + layer.time_ms
    return ProfileGroup(
        key=key,
        layers=len(layers),
        time_ms=time_ms,
        share=time_ms / total_ms if total_ms > 0 else 0.0,
        roofline_ms=roof_ms,
        roofline_fraction=roof_ms / judged_ms if roof_ms is not None and judged_ms > 0 else None,
        lost_ms=judged_ms - roof_ms if roof_ms is not None else None,
        bound=max(by_bound, key=lambda bound: by_bound[bound]) if by_bound else None,
        dtypes=_distinct(str(layer.dtype) for layer in judged),
    )
