"""Graph surgery shared by passes: find constants and sole consumers, swap a pattern for its
replacement, and record both sides in the pass's log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir

from passes.base import PassLog


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's contents when they are fixed: an initializer that is not a graph input, or
    the output of a Constant node with a `value` tensor. None otherwise."""
    if value is None:
        return None
    if value.is_initializer() and not value.is_graph_input() and value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and producer.domain == "":
        attribute = producer.attributes.get("value")
        if attribute is not None and attribute.type == ir.AttributeType.TENSOR:
            return attribute.as_tensor().numpy()
    return None


def sole_consumer(value: ir.Value) -> ir.Node | None:
    """The only node reading `value`, if exactly one does and it is not a graph output."""
    consumers = value.consumers()
    if len(consumers) != 1 or value.is_graph_output():
        return None
    return consumers[0]


def produced_by(value: ir.Value | None, op_type: str, domain: str = "") -> ir.Node | None:
    """The node producing `value` if it is an `op_type` node of `domain`."""
    if value is None:
        return None
    producer = value.producer()
    if producer is None or producer.op_type != op_type or producer.domain != domain:
        return None
    return producer


def add_initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    """A new initializer under a name not yet used in the graph."""
    taken = {v.name for v in graph.inputs} | set(graph.initializers)
    taken |= {out.name for node in graph for out in node.outputs}
    unique, suffix = name, 1
    while unique in taken:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    value = ir.Value(name=unique, const_value=ir.tensor(array, name=unique))
    value.dtype = value.const_value.dtype
    value.shape = ir.Shape(array.shape)
    graph.register_initializer(value)
    return value


def replace_nodes(
    log: PassLog,
    old: Sequence[ir.Node],
    new: Sequence[ir.Node],
    outputs: Mapping[ir.Value, ir.Value],
    *,
    rule: str,
    reason: str,
) -> None:
    """Swap the matched nodes `old` for `new`, recording both.

    `new` goes right after the last of `old` (every outside input of the pattern is defined by
    then); each old output in `outputs` has its uses moved to its replacement, which takes over
    its name (so graph outputs keep their names); then `old` is removed. An old output still read
    outside the pattern and missing from `outputs` is a bug in the pass and raises.
    """
    graph = old[0].graph
    assert graph is not None, "pattern nodes must be in a graph"
    last = max(old, key=lambda node: graph.index(node))
    graph.insert_after(last, list(new))
    for old_value, new_value in outputs.items():
        name = old_value.name
        old_value.replace_all_uses_with(new_value, replace_graph_outputs=True)
        old_value.name = None
        new_value.name = name
        if new_value.type is None:
            new_value.type = old_value.type
        if new_value.shape is None:
            new_value.shape = old_value.shape
    for node in new:
        log.added(node, rule=rule, reason=reason, replaces=old)
    log.removed(old, rule=rule, reason=reason)
    graph.remove(old, safe=True)
