"""Which IR nodes each node of onnxruntime's optimized graph executes.

onnxruntime rewrites the graph before it runs it: fusions (Conv+Relu into FusedConv, MatMul+Add
into Gemm, a decomposed LayerNorm into LayerNormalization) give the fused node a new name but
keep the names of the tensors at its boundary; layout changes (NCHWc convolutions, the
Reshapes around a Gemm on 3-d inputs) make up names for the tensors between its own nodes.

So the optimized nodes are first grouped: two nodes joined by a tensor the IR does not have
belong together (a chain of NCHWc convolutions, Reshape -> Gemm -> Reshape). A group's tensors
that the IR has are its boundary, and the IR nodes between them (`ir.tensor_span`) are what the
group executes. A group of one node executes them all. In a larger group each node first
claims one IR node as its anchor: a node whose output the IR has claims that tensor's
producer if it is of the node's kind, then each node in execution order claims the first
unclaimed IR node of its kind (`_KINDS`: Gemm stands for a MatMul, FusedConv for a Conv). The
other IR nodes follow their inputs (to the anchor of the producer that runs last, as a fused
epilogue does), or else their consumers (shape arithmetic that onnxruntime folded into its
Reshape). A node that anchors nothing (a layout reorder onnxruntime added) executes no IR
node, and its time stays in the profile as its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnx_ir as oir

from ir.node_ids import node_id
from ir.tensor_span import nodes_between

# onnxruntime's kernels that stand for an IR op of another name.
_KINDS: dict[str, frozenset[str]] = {
    "Gemm": frozenset({"Gemm", "MatMul"}),
    "FusedGemm": frozenset({"Gemm", "MatMul"}),
    "FusedMatMul": frozenset({"MatMul"}),
    "FusedConv": frozenset({"Conv"}),
    "QLinearConv": frozenset({"QLinearConv", "Conv"}),
    "QLinearMatMul": frozenset({"QLinearMatMul", "MatMul"}),
    "MatMulIntegerToFloat": frozenset({"MatMulInteger", "MatMul"}),
    "DynamicQuantizeMatMul": frozenset({"MatMulInteger", "MatMul"}),
}


@dataclass(frozen=True)
class KernelNode:
    """One node of onnxruntime's optimized graph: its name (what its profile events are
    called), op type, and tensor names."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def kernel_ir_nodes(kernels: Sequence[KernelNode], model: oir.Model) -> dict[str, tuple[str, ...]]:
    """Each optimized node's IR node ids (by its name; kernels in execution order), each IR
    node given to one optimized node at most."""
    graph = model.graph
    known = {v.name for v in graph.inputs if v.name}
    known.update(out.name for node in graph for out in node.outputs if out.name)
    claimed: set[oir.Node] = set()
    found: dict[str, tuple[str, ...]] = {kernel.name: () for kernel in kernels}
    for group in _groups(kernels, known):
        inputs = {name for kernel in group for name in kernel.inputs if name in known}
        outputs = {name for kernel in group for name in kernel.outputs if name in known}
        span = [n for n in nodes_between(graph, inputs, outputs) if n not in claimed]
        claimed.update(span)
        owners = _owners(group, span) if len(group) > 1 else dict.fromkeys(span, 0)
        for node in span:
            if node in owners:
                name = group[owners[node]].name
                found[name] = (*found[name], node_id(node))
    return found


def _groups(kernels: Sequence[KernelNode], known: set[str]) -> list[list[KernelNode]]:
    """The kernels joined through tensors the IR does not have, each group in execution order,
    groups in the order of their first kernel."""
    parent = list(range(len(kernels)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    producer = {name: i for i, k in enumerate(kernels) for name in k.outputs if name}
    for i, kernel in enumerate(kernels):
        for name in kernel.inputs:
            if name and name not in known and name in producer:
                parent[root(i)] = root(producer[name])
    groups: dict[int, list[KernelNode]] = {}
    for i, kernel in enumerate(kernels):
        groups.setdefault(root(i), []).append(kernel)
    return list(groups.values())


def _stands_for(kernel: KernelNode, node: oir.Node) -> bool:
    return node.op_type in _KINDS.get(kernel.op_type, frozenset({kernel.op_type}))


def _owners(group: list[KernelNode], span: list[oir.Node]) -> dict[oir.Node, int]:
    """The group member (by position) that executes each IR node of the span (see the module
    docstring); IR nodes no member can be tied to are left out."""
    owners: dict[oir.Node, int] = {}
    producers = {out.name: node for node in span for out in node.outputs if out.name}
    for position, kernel in enumerate(group):
        for name in kernel.outputs:
            node = producers.get(name)
            if node is not None and node not in owners and _stands_for(kernel, node):
                owners[node] = position
                break
    for position, kernel in enumerate(group):
        if position in owners.values():
            continue
        anchor = next((n for n in span if n not in owners and _stands_for(kernel, n)), None)
        if anchor is not None:
            owners[anchor] = position
    for node in span:
        if node not in owners:
            feeding = [
                owners[v.producer()]
                for v in node.inputs
                if v is not None and v.producer() in owners
            ]
            if feeding:
                owners[node] = max(feeding)
    for node in reversed(span):
        if node not in owners:
            fed = {owners[user] for out in node.outputs for user, _ in out.uses() if user in owners}
            if len(fed) == 1:
                owners[node] = fed.pop()
    return owners
