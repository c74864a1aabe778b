"""cse: compute each value once.

Exporters repeat work (the same Shape of the same tensor per attention head, one Constant per
use of a scalar); merged, it costs a target nothing, and the patterns the fusion passes look for
stop being split across copies.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import onnx_ir as oir

from ir.graph_view import subgraphs_of
from ir.node_ids import describe_node
from passes.audit import ChangeKind
from passes.base import Pass, PassConfig, PassLog
from passes.option_range import bounded
from passes.rewrite import forward_uses, is_nondeterministic, output_handover_blocker


@dataclass(frozen=True)
class CseConfig(PassConfig):
    """`max_initializer_elements`: equal initializers up to this many elements are merged too
    (0 turns that off); comparing bigger ones would cost more than it finds."""

    max_initializer_elements: int = bounded(4096, low=0, note="0: compare no initializers")


class Cse(Pass):
    name = "cse"
    summary = "merge nodes (and small initializers) that compute the same value"
    config_type = CseConfig

    def run(self, model: oir.Model, log: PassLog) -> None:
        for graph in model.graphs():
            if self.config.max_initializer_elements > 0:
                self._merge_initializers(graph, log)
            _merge_nodes(graph, log)

    def _merge_initializers(self, graph: oir.Graph, log: PassLog) -> None:
        kept: dict[Hashable, oir.Value] = {}
        for value in list(graph.initializers.values()):
            tensor = value.const_value
            if (
                tensor is None
                or tensor.size > self.config.max_initializer_elements
                or value.is_graph_input()
                or value.is_graph_output()
                or not value.uses()
            ):
                continue
            key = _tensor_key(tensor)
            first = kept.setdefault(key, value)
            if first is value:
                continue
            readers = value.consumers()
            value.replace_all_uses_with(first)
            graph.initializers.pop(value.name)
            log.changed(
                ChangeKind.REWIRED,
                readers,
                rule="merge-initializers",
                reason=f"initializer '{value.name}' equals '{first.name}' "
                f"({tensor.dtype.name}{tensor.shape}); its readers now read '{first.name}' "
                "and it is removed",
            )


def _merge_nodes(graph: oir.Graph, log: PassLog) -> None:
    """Graph order is topological, so the first node with a key can stand for later ones."""
    first_with: dict[Hashable, oir.Node] = {}
    for node in list(graph):
        if not node.outputs:
            continue
        key = _node_key(node)
        first = first_with.setdefault(key, node)
        if first is node:
            continue
        reason = _blocker(node, first)
        if reason is not None:
            log.skip([node, first], rule="cse", reason=f"not merged: {reason}")
            continue
        for value, kept in zip(node.outputs, first.outputs, strict=True):
            forward_uses(value, kept)
        log.removed(
            [node],
            rule="cse",
            reason=f"{describe_node(node)} computes the same as {describe_node(first)} (same "
            "inputs and attributes); its readers now read the outputs of the first",
        )
        graph.remove(node, safe=True)


def _blocker(node: oir.Node, first: oir.Node) -> str | None:
    if is_nondeterministic(node):
        return f"{describe_node(node)} is nondeterministic, so it may differ from its twin"
    if any(subgraphs_of(node)):
        return f"{describe_node(node)} has subgraphs, which cse does not compare"
    for value, kept in zip(node.outputs, first.outputs, strict=True):
        blocker = output_handover_blocker(value, kept)
        if blocker is not None:
            return f"output '{value.name}' of {describe_node(node)} is a graph output and {blocker}"
    return None


def _node_key(node: oir.Node) -> Hashable:
    """What makes two nodes compute the same: op, inputs by identity and attribute values
    (subgraphs by position only; `_blocker` keeps such nodes apart)."""
    attributes = tuple(
        sorted((name, _attribute_key(attribute)) for name, attribute in node.attributes.items())
    )
    return (
        node.domain,
        node.op_type,
        node.overload,
        node.version,
        tuple(node.inputs),
        len(node.outputs),
        attributes,
    )


def _attribute_key(attribute: oir.Attr) -> Hashable:
    """Exact: tensors by dtype, shape and bytes (not by name), floats by bit pattern."""
    if attribute.type == oir.AttributeType.TENSOR:
        return _tensor_key(attribute.as_tensor())
    if attribute.type == oir.AttributeType.TENSORS:
        return tuple(_tensor_key(tensor) for tensor in attribute.as_tensors())
    if attribute.type in (oir.AttributeType.GRAPH, oir.AttributeType.GRAPHS):
        return "subgraph"
    proto = oir.serde.serialize_attribute(attribute)
    return proto.SerializeToString(deterministic=True)


def _tensor_key(tensor: oir.TensorProtocol) -> Hashable:
    data = tuple(tensor.string_data()) if tensor.dtype == oir.DataType.STRING else tensor.tobytes()
    return (tensor.dtype, tuple(tensor.shape), data)
