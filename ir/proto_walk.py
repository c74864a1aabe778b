"""Walking the graphs of an ONNX protobuf, subgraphs (If/Loop/Scan bodies) included."""

from __future__ import annotations

from collections.abc import Iterator

import onnx


def graph_protos(
    graph: onnx.GraphProto, name: str | None
) -> Iterator[tuple[str | None, onnx.GraphProto]]:
    """The graph and all its subgraphs, each with its name (None for the main graph)."""
    yield name, graph
    for node in graph.node:
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else []
            if attribute.type == onnx.AttributeProto.GRAPHS:
                subgraphs = list(attribute.graphs)
            for subgraph in subgraphs:
                yield from graph_protos(subgraph, subgraph.name or attribute.name)
