"""The nodes of a graph that lie between some of its tensors.

A compiler that rewrites a model (fusing nodes, inserting layout changes) keeps the names of
some tensors and makes up others. A node of its rewritten graph that reads and writes tensors
the IR also has stands for the IR nodes computing the one from the other; this module finds
them, by tensor name, so that it works on any rewritten copy of the graph.
"""

from __future__ import annotations

from collections.abc import Collection

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
    behind: set[oir.Node] = set()
    pending = [producers[name] for name in outputs if name in producers]
    while pending:
        node = pending.pop()
        if node in behind:
            continue
        behind.add(node)
        for value in node.inputs:
            if value is None or value.name in inputs:
                continue
            producer = value.producer()
            if producer is not None and producer not in behind:
                pending.append(producer)
    reached: set[oir.Node] = set()
    pending = [
        node for node in behind if any(v is not None and v.name in inputs for v in node.inputs)
    ]
    while pending:
        node = pending.pop()
        if node in reached:
            continue
        reached.add(node)
        for out in node.outputs:
            pending.extend(user for user, _ in out.uses() if user in behind)
    return tuple(node for node in graph if node in reached)
