"""A networkx view of one onnx_ir graph, for analysis only.

The onnx_ir graph stays the source of truth: passes edit it, never this view. The view exists so
that graph algorithms (cycles, reachability, scheduling) can use networkx instead of walking
use-def chains by hand. It is a snapshot; rebuild it after the graph changes.

Nodes are keyed by stable node id. Edges run from the producer of a value to each node that reads
it, one edge per (producer, consumer, value). A node inside a subgraph (the body of If, Loop or
Scan) may read a value of an enclosing graph without declaring it; such a read becomes an edge
from that value's producer to the node that owns the subgraph, because the owner cannot run until
the value exists. Graph inputs and initializers have no producer, so they add no nodes or edges.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx
import onnx_ir as oir

from ir.node_ids import node_id


def subgraphs_of(node: oir.Node) -> Iterator[oir.Graph]:
    """The graphs held in the node's attributes (If branches, Loop and Scan bodies)."""
    for attribute in node.attributes.values():
        if not isinstance(attribute, oir.Attr) or attribute.is_ref():
            continue
        if attribute.type == oir.AttributeType.GRAPH:
            yield attribute.as_graph()
        elif attribute.type == oir.AttributeType.GRAPHS:
            yield from attribute.as_graphs()


def captured_values(node: oir.Node) -> list[oir.Value]:
    """Values that the node's subgraphs read from outside themselves, in first-read order.

    These are implicit inputs of the node: a value defined in an enclosing graph that some node
    (at any depth) inside the subgraphs uses, or that a subgraph returns as an output.
    """
    captured: dict[oir.Value, None] = {}
    for subgraph in subgraphs_of(node):
        local = local_values(subgraph)
        for inner in subgraph:
            for value in (*inner.inputs, *captured_values(inner)):
                if value is not None and value not in local:
                    captured[value] = None
        for value in subgraph.outputs:
            if value not in local:
                captured[value] = None
    return list(captured)


def local_values(graph: oir.Graph) -> set[oir.Value]:
    """Values the graph itself defines: its inputs, initializers and its nodes' outputs."""
    local = set(graph.inputs)
    local.update(graph.initializers.values())
    for node in graph:
        local.update(node.outputs)
    return local


def _node_keys(graph: oir.Graph) -> dict[oir.Node, str]:
    """Each node's key in the view: its stable id, or `#<position>` when the id is missing or
    already taken by an earlier node (so the view keeps every node even before ids are fixed)."""
    keys: dict[oir.Node, str] = {}
    taken: set[str] = set()
    for position, node in enumerate(graph):
        key = node_id(node)
        if key == "?" or key in taken:
            key = f"#{position}"
        taken.add(key)
        keys[node] = key
    return keys


def to_networkx(graph: oir.Graph) -> nx.MultiDiGraph:
    """The graph's ops as a MultiDiGraph (see the module docstring for what nodes and edges are).

    Node attributes: `op`, `domain`, `name`, `ir_node`. Edge key: the value's name; edge
    attributes: `value`, `dtype`, `shape`.
    """
    keys = _node_keys(graph)
    view = nx.MultiDiGraph()
    for node, key in keys.items():
        view.add_node(key, op=node.op_type, domain=node.domain, name=node.name, ir_node=node)
    for node, consumer in keys.items():
        reads = [value for value in node.inputs if value is not None]
        reads.extend(captured_values(node))
        for value in dict.fromkeys(reads):
            producer = value.producer()
            if producer is None or producer not in keys:
                continue
            edge_key = value.name or f"{keys[producer]}:{value.index()}"
            view.add_edge(
                keys[producer],
                consumer,
                key=edge_key,
                value=value,
                dtype=value.dtype,
                shape=value.shape,
            )
    return view
