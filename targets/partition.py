"""Splitting a model between a target and the reference path, as ByteMLPerf's "subgraph
coverage" does: nodes the target cannot run fall back to the reference CPU path.

Nodes are assigned to the target or to the fallback by the target's declared ops. Execution
needs an order, so the main graph is cut into segments: a topological order that keeps nodes of
one side together as long as possible (a greedy order over networkx's dependency view), cut
wherever the side changes. The connected groups of fallback nodes (networkx components) and the
coverage (share of nodes and of FLOPs on the target) go into the compile record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import networkx as nx
import onnx
import onnx_ir as oir

from ir.errors import AsicperfError
from ir.graph_view import captured_values, to_networkx
from ir.node_ids import describe_node, node_id
from ir.ops import node_cost
from targets.api import Capabilities, Target, activation_dtypes, dtype_name, is_floating


@dataclass(frozen=True)
class Segment:
    """A run of consecutive nodes on one side, with the values crossing its border."""

    index: int
    on_target: bool
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class PartitionPlan:
    target: str
    segments: tuple[Segment, ...]
    fallback_groups: tuple[tuple[str, ...], ...]
    unsupported: Mapping[str, str]  # node id -> why the target cannot run it
    node_coverage: float
    flop_coverage: float | None  # None when no node has a known FLOP count

    @property
    def whole_on_target(self) -> bool:
        return len(self.segments) == 1 and self.segments[0].on_target

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_dtypes(model: oir.Model, target: Target, capabilities: Capabilities) -> None:
    """Refuse a model whose floating-point computation the target cannot do in that precision.

    Falling back would hide it: a bf16 pipeline on a target without bf16 would silently run on
    the reference path. Integer and bool tensors fall back node by node instead.
    """
    boundary = capabilities.boundary_dtypes
    graph_io = [*model.graph.inputs, *model.graph.outputs]
    for value in graph_io if boundary is not None else []:
        if value.is_initializer() or value.dtype is None:
            continue
        if dtype_name(value.dtype) not in boundary:
            raise AsicperfError(
                f"target '{target.name}' cannot take or return dtype "
                f"{dtype_name(value.dtype)} (graph input or output '{value.name}'); "
                f"its sessions exchange {', '.join(sorted(boundary))}"
            )
    for node in model.graph:
        if not capabilities.runs_op(node.domain, node.op_type):
            continue
        for value, dtype in activation_dtypes(node):
            if is_floating(dtype) and dtype not in capabilities.dtypes:
                raise AsicperfError(
                    f"target '{target.name}' does not support dtype {dtype}: value "
                    f"'{value.name}' of {describe_node(node)}; it runs "
                    f"{', '.join(sorted(capabilities.dtypes))}"
                )


def _check_fallback_dtypes(
    nodes: list[oir.Node], unsupported: dict[str, str], target: Target, capabilities: Capabilities
) -> None:
    """A node falls back only if its floating tensors can cross into and out of the target's
    sessions: a bf16 Gemm onnxruntime has no kernel for cannot, as its sessions exchange no
    bf16. Refuse it here, naming the node, rather than fail later in the target's loader."""
    boundary = capabilities.boundary_dtypes
    for node in nodes if boundary is not None else []:
        reason = unsupported.get(node_id(node))
        if reason is None:
            continue
        for value, dtype in activation_dtypes(node):
            if is_floating(dtype) and dtype not in boundary:
                raise AsicperfError(
                    f"target '{target.name}' cannot run {describe_node(node)} ({reason}), and "
                    f"its {dtype} value '{value.name}' cannot fall back to the reference path: "
                    f"the target's sessions exchange {', '.join(sorted(boundary))}"
                )


def plan_partition(model: oir.Model, target: Target, capabilities: Capabilities) -> PartitionPlan:
    graph = model.graph
    nodes = list(graph)
    reasons = {node_id(node): target.unsupported_reason(node, capabilities) for node in nodes}
    unsupported = {key: reason for key, reason in reasons.items() if reason is not None}
    _check_fallback_dtypes(nodes, unsupported, target, capabilities)
    view = to_networkx(graph)
    order = _grouped_order(view, nodes, unsupported)
    runs: list[list[oir.Node]] = []
    for node in order:
        on_target = node_id(node) not in unsupported
        if runs and (node_id(runs[-1][0]) not in unsupported) == on_target:
            runs[-1].append(node)
        else:
            runs.append([node])
    segments = tuple(
        _segment(index, run, graph, node_id(run[0]) not in unsupported)
        for index, run in enumerate(runs)
    )
    fallback = view.subgraph(list(unsupported)).to_undirected(as_view=True)
    groups = sorted(
        (tuple(sorted(group, key=_id_number)) for group in nx.connected_components(fallback)),
        key=lambda group: _id_number(group[0]),
    )
    return PartitionPlan(
        target=target.name,
        segments=segments,
        fallback_groups=tuple(groups),
        unsupported=unsupported,
        node_coverage=1 - len(unsupported) / len(nodes) if nodes else 1.0,
        flop_coverage=_flop_coverage(nodes, unsupported),
    )


def _id_number(text: str) -> tuple[int, str]:
    digits = text[1:]
    return (int(digits), text) if digits.isdigit() else (-1, text)


def _grouped_order(
    view: nx.MultiDiGraph, nodes: Sequence[oir.Node], unsupported: Mapping[str, str]
) -> list[oir.Node]:
    """A topological order that stays on one side while it has ready nodes (fewest cuts)."""
    position = {node_id(node): index for index, node in enumerate(nodes)}
    waiting = {key: view.in_degree(key) for key in view.nodes}
    ready = [key for key, count in waiting.items() if count == 0]
    side = None
    order: list[oir.Node] = []
    while ready:
        same = [key for key in ready if (key not in unsupported) == side]
        pick = min(same or ready, key=position.__getitem__)
        ready.remove(pick)
        side = pick not in unsupported
        order.append(view.nodes[pick]["ir_node"])
        for _, successor, _ in view.out_edges(pick, keys=True):
            waiting[successor] -= 1
            if waiting[successor] == 0:
                ready.append(successor)
    return order


def _segment(index: int, run: list[oir.Node], graph: oir.Graph, on_target: bool) -> Segment:
    members = set(run)
    produced = {value for node in run for value in node.outputs}
    inputs: list[str] = []
    for node in run:
        for value in [*node.inputs, *captured_values(node)]:
            if value is None or value in produced or value.name in inputs:
                continue
            if value.is_initializer() and not value.is_graph_input():
                continue  # travels inside the segment's model
            inputs.append(value.name or "")
    outputs = [
        value.name or ""
        for node in run
        for value in node.outputs
        if value.is_graph_output() or any(user not in members for user in value.consumers())
    ]
    return Segment(index, on_target, tuple(node_id(n) for n in run), tuple(inputs), tuple(outputs))


def _flop_coverage(nodes: Sequence[oir.Node], unsupported: Mapping[str, str]) -> float | None:
    total = on_target = 0
    for node in nodes:
        cost = node_cost(node)
        if cost is None:
            continue
        total += cost.flops
        if node_id(node) not in unsupported:
            on_target += cost.flops
    return on_target / total if total else None


def segment_model(model: oir.Model, segment: Segment) -> oir.Model:
    """The segment as a standalone model: its nodes, the initializers they read, its border
    values as graph inputs and outputs (types from the IR)."""
    proto = oir.to_proto(model)
    wanted = set(segment.nodes)
    values = {v.name: v for v in _all_values(model)}
    graph = onnx.GraphProto(name=f"{proto.graph.name}_segment{segment.index}")
    ids = [node_id(node) for node in model.graph]
    graph.node.extend(
        node_proto for node_proto, key in zip(proto.graph.node, ids, strict=True) if key in wanted
    )
    used = {name for node in graph.node for name in _names_read(node)}
    graph.initializer.extend(
        tensor
        for tensor in proto.graph.initializer
        if tensor.name in used and tensor.name not in segment.inputs
    )
    graph.input.extend(_value_info(values[name]) for name in segment.inputs)
    graph.output.extend(_value_info(values[name]) for name in segment.outputs)
    standalone = onnx.ModelProto(ir_version=proto.ir_version, graph=graph)
    standalone.opset_import.extend(proto.opset_import)
    standalone.functions.extend(proto.functions)
    return oir.serde.deserialize_model(standalone)


def _all_values(model: oir.Model) -> list[oir.Value]:
    graph = model.graph
    return [*graph.inputs, *graph.initializers.values(), *(o for n in graph for o in n.outputs)]


def _names_read(node: onnx.NodeProto) -> list[str]:
    """Inputs of the node and of its subgraphs' nodes (outer-scope reads included)."""
    names = list(node.input)
    for attribute in node.attribute:
        subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else []
        subgraphs += list(attribute.graphs)
        for subgraph in subgraphs:
            for inner in subgraph.node:
                names.extend(_names_read(inner))
    return names


def _value_info(value: oir.Value) -> onnx.ValueInfoProto:
    return oir.serde.serialize_value(value)
