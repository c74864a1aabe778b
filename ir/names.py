"""Fresh value names: a graph's values must keep distinct names when passes add new ones."""

from __future__ import annotations

import onnx_ir as oir


def unique_name(graph: oir.Graph, base: str) -> str:
    """`base`, or `base_N`, whichever no value of the graph is named yet."""
    taken = {v.name for v in graph.inputs} | set(graph.initializers)
    taken |= {out.name for node in graph for out in node.outputs}
    unique, suffix = base, 1
    while unique in taken:
        unique, suffix = f"{base}_{suffix}", suffix + 1
    return unique
