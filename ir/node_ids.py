"""Stable node ids.

Every node gets an id ("n0", "n1", ...) the first time a model is imported. The id is stored in
the node's ONNX `metadata_props`, so it survives passes, saving and reloading, and lets an audit
record or a report point at the same node across the whole pipeline. Nodes created later take the
next free number; ids are never reused within a model.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: `passes.base`, and so every target plugin, imports this
    import onnx_ir as oir

NODE_ID_KEY = "asicperf.id"
# JSON {"pass", "rule", "replaces": [ids], "origin": [ids]} on nodes a pass created: `replaces`
# are the nodes it stands for, `origin` the ids of the imported nodes they came from.
PROVENANCE_KEY = "asicperf.provenance"


def node_id(node: oir.Node) -> str:
    """The node's stable id, or "?" when ids were never assigned (a bare onnx_ir model)."""
    return node.metadata_props.get(NODE_ID_KEY, "?")


def _id_number(text: str) -> int | None:
    if text.startswith("n") and text[1:].isdigit():
        return int(text[1:])
    return None


def next_free_number(model: oir.Model) -> int:
    """One past the largest numeric id in the model (0 for a model without ids)."""
    numbers = (
        _id_number(node.metadata_props.get(NODE_ID_KEY, "")) for node in model.graph.all_nodes()
    )
    return max((n for n in numbers if n is not None), default=-1) + 1


def assign_node_ids(model: oir.Model) -> int:
    """Give every node without an id the next free one, in graph order; returns how many."""
    counter = next_free_number(model)
    assigned = 0
    for node in model.graph.all_nodes():
        if NODE_ID_KEY not in node.metadata_props:
            node.metadata_props[NODE_ID_KEY] = f"n{counter}"
            counter += 1
            assigned += 1
    return assigned


def find_node(model: oir.Model, wanted: str) -> oir.Node | None:
    """The node with the given stable id, searching subgraphs too."""
    for node in model.graph.all_nodes():
        if node.metadata_props.get(NODE_ID_KEY) == wanted:
            return node
    return None


def provenance(node: oir.Node) -> dict[str, object] | None:
    """Where a pass-created node came from (None for a node imported from the original file)."""
    text = node.metadata_props.get(PROVENANCE_KEY)
    return None if text is None else json.loads(text)


def origin_ids(node: oir.Node) -> tuple[str, ...]:
    """The ids of the imported nodes this node stands for (itself, if it was imported)."""
    record = provenance(node)
    if record is None:
        return (node_id(node),)
    return tuple(record["origin"])


def set_provenance(
    node: oir.Node, *, pass_name: str, rule: str, replaces: tuple[oir.Node, ...]
) -> None:
    """Mark `node` as created by a pass, standing for `replaces` (and their origins)."""
    origin: list[str] = []
    for replaced in replaces:
        origin.extend(i for i in origin_ids(replaced) if i not in origin)
    record = {
        "pass": pass_name,
        "rule": rule,
        "replaces": [node_id(replaced) for replaced in replaces],
        "origin": origin,
    }
    node.metadata_props[PROVENANCE_KEY] = json.dumps(record, sort_keys=True)


def describe_node(node: oir.Node) -> str:
    """How messages name a node: stable id, name and op."""
    name = f" '{node.name}'" if node.name else ""
    return f"node {node_id(node)}{name} ({node.op_type})"
