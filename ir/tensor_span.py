"""The nodes of a graph that lie between some of its tensors.

A compiler that rewrites a model (fusing nodes, inserting layout changes) keeps the names of
some tensors and makes up others. A node of its rewritten graph that reads and writes tensors
the IR also has stands for the IR nodes computing the one from the other; this module finds
them, by tensor name, so that it works on any rewritten copy of the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

import onnx_ir as oir


def nodes_between(
    graph: oir.Graph, inputs: Collection[str], outputs: Collection[str]
) -> tuple[oir.Node, ...]:
    """The nodes of `graph` on a path from a tensor named in `inputs` to one named in
    `outputs`, in graph order: the producers of `outputs` and their ancestors, not walking past
    an input, that also read (directly or through each other) one of the inputs. A node that
    reads only constants is on no such path: a compiler folded it, it computes nothing at run
    time. Names the graph does not have are ignored."""
    producers = {out.name: node for node in graph for out in node.outputs if out.name}

    def producers_of(node: oir.Node) -> list[oir.Node]:
        found = (v.producer() for v in node.inputs if v is not None and v.name not in inputs)
        return [producer for producer in found if producer is not None]

    behind = _reachable([producers[name] for name in outputs if name in producers], producers_of)

    def users_behind(node: oir.Node) -> list[oir.Node]:
        return [user for out in node.outputs for user, _ in out.uses() if user in behind]

    reading = [
        node for node in behind if any(v is not None and v.name in inputs for v in node.inputs)
    ]
    reached = _reachable(reading, users_behind)
    return tuple(node for node in graph if node in reached)


def _reachable(
    start: Iterable[oir.Node], step: Callable[[oir.Node], Iterable[oir.Node]]
) -> set[oir.Node]:
    """`start` and every node `step` leads to from them, transitively."""
    seen: set[oir.Node] = set()
    pending = list(start)
    while pending:
        node = pending.pop()
        if node not in seen:
            seen.add(node)
            pending.extend(step(node))
    return seen
