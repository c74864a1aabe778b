"""dce: remove what no output depends on.

Folding and rewrites leave nodes and weights behind that nothing reads any more; they would
still cost a target time and memory, and a report would count them.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as oir

from ir.graph_view import subgraphs_of
from ir.node_ids import describe_node
from passes.base import Pass, PassConfig, PassLog

# The default domain's import stays even when unused: every ONNX model declares it.
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class DceConfig(PassConfig):
    """`opset_imports`: also drop imports of domains that no node or function uses."""

    opset_imports: bool = True


class Dce(Pass):
    name = "dce"
    summary = "remove nodes and initializers that no graph output depends on"
    config_type = DceConfig

    def run(self, model: oir.Model, log: PassLog) -> None:
        _sweep(model.graph, log)
        if self.config.opset_imports:
            _drop_unused_imports(model, log)


def _sweep(graph: oir.Graph, log: PassLog) -> None:
    """Readers come after what they read, so one backward walk reaches the fixed point. A live
    node's subgraphs are swept when it is reached, before the nodes their reads keep alive."""
    for node in reversed(list(graph)):
        if not node.outputs:
            log.skip(
                [node],
                rule="dead-node",
                reason=f"kept {describe_node(node)}: it has no outputs, so it can only be there "
                "for a side effect",
            )
        elif any(value.uses() or value.is_graph_output() for value in node.outputs):
            for subgraph in subgraphs_of(node):
                _sweep(subgraph, log)
        else:
            _remove_dead_node(graph, node, log)
    for value in list(graph.initializers.values()):
        if value.uses() or value.is_graph_output():
            continue
        if value.is_graph_input():
            log.skip(
                [],
                rule="unused-initializer",
                reason=f"kept initializer '{value.name}': no node reads it, but it is the "
                "default of a graph input",
            )
            continue
        graph.initializers.pop(value.name)
        log.changed_graph(
            rule="unused-initializer",
            reason=f"removed initializer '{value.name}' ({_tensor_text(value)}): no node reads it "
            "and it is not a graph output",
        )


def _remove_dead_node(graph: oir.Graph, node: oir.Node, log: PassLog) -> None:
    inner = [n for subgraph in subgraphs_of(node) for n in subgraph.all_nodes()]
    # Inner nodes may read values of this graph; release those reads so they can die too.
    for inner_node in inner:
        for index in range(len(inner_node.inputs)):
            inner_node.replace_input_with(index, None)
    with_inner = f", with the {len(inner)} nodes of its subgraphs" if inner else ""
    log.removed(
        [node],
        rule="dead-node",
        reason=f"removed {describe_node(node)}{with_inner}: none of its outputs is read or is "
        "a graph output",
    )
    graph.remove(node, safe=True)


def _drop_unused_imports(model: oir.Model, log: PassLog) -> None:
    used = {node.domain for node in model.graph.all_nodes()}
    for function in model.functions.values():
        used.add(function.domain)
        used.update(node.domain for node in function)
    for domain in list(model.opset_imports):
        if domain in used or domain in _DEFAULT_DOMAINS:
            continue
        version = model.opset_imports.pop(domain)
        log.changed_graph(
            rule="unused-opset-import",
            reason=f"removed the import of domain '{domain}' version {version}: no node or "
            "function uses it",
        )


def _tensor_text(value: oir.Value) -> str:
    tensor = value.const_value
    return "no data" if tensor is None else f"{tensor.dtype.name}{tensor.shape}"
