"""A readable account of a model: what `runner ir show` prints, as text or as JSON.

`summarize` gathers everything once into frozen records; `format_listing` only lays them out, so
the text view and the JSON document always agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import onnx_ir as oir

from ir.fingerprint import fingerprint
from ir.node_ids import node_id
from ir.ops import node_cost
from ir.units import si

Dim = int | str | None
_MAX_LISTED_ITEMS = 8


@dataclass(frozen=True)
class ValueSummary:
    name: str
    dtype: str | None
    shape: tuple[Dim, ...] | None
    initializer: bool

    def short(self) -> str:
        dtype = self.dtype or "?"
        if self.shape is None:
            return f"{dtype}[?]"
        return f"{dtype}[{','.join('?' if d is None else str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class NodeSummary:
    id: str
    op: str
    domain: str
    name: str
    depth: int
    inputs: tuple[ValueSummary | None, ...]
    outputs: tuple[ValueSummary, ...]
    attributes: Mapping[str, Any]
    flops: int | None
    bytes_moved: int | None


@dataclass(frozen=True)
class ModelSummary:
    fingerprint: str
    ir_version: int
    opsets: Mapping[str, int]
    inputs: tuple[ValueSummary, ...]
    outputs: tuple[ValueSummary, ...]
    nodes: tuple[NodeSummary, ...]
    op_counts: Mapping[str, int]
    params: int
    param_bytes: int
    flops: int
    bytes_moved: int
    uncosted_nodes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(model: oir.Model, bindings: Mapping[str, int] | None = None) -> ModelSummary:
    """Collect the listing of `model`; `bindings` give symbolic dims values for the FLOP count."""
    nodes = tuple(_summarize_graph(model.graph, bindings, depth=0))
    initializers = [
        value.const_value
        for graph in model.graphs()
        for value in graph.initializers.values()
        if value.const_value is not None
    ]
    return ModelSummary(
        fingerprint=fingerprint(model),
        ir_version=model.ir_version,
        opsets=dict(model.opset_imports),
        inputs=tuple(_summarize_value(v) for v in model.graph.inputs),
        outputs=tuple(_summarize_value(v) for v in model.graph.outputs),
        nodes=nodes,
        op_counts=dict(Counter(node.op for node in nodes).most_common()),
        params=sum(tensor.size for tensor in initializers),
        param_bytes=sum(tensor.nbytes for tensor in initializers),
        flops=sum(node.flops or 0 for node in nodes),
        bytes_moved=sum(node.bytes_moved or 0 for node in nodes),
        uncosted_nodes=tuple(node.id for node in nodes if node.flops is None),
    )


def _summarize_graph(graph: oir.Graph, bindings: Mapping[str, int] | None, depth: int):
    for node in graph:
        cost = node_cost(node, bindings)
        yield NodeSummary(
            id=node_id(node),
            op=node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}",
            domain=node.domain,
            name=node.name or "",
            depth=depth,
            inputs=tuple(None if v is None else _summarize_value(v) for v in node.inputs),
            outputs=tuple(_summarize_value(v) for v in node.outputs),
            attributes={name: _attribute_value(attr) for name, attr in node.attributes.items()},
            flops=None if cost is None else cost.flops,
            bytes_moved=None if cost is None else cost.bytes_moved,
        )
        for attr in node.attributes.values():
            if attr.type == oir.AttributeType.GRAPH:
                yield from _summarize_graph(attr.as_graph(), bindings, depth + 1)
            elif attr.type == oir.AttributeType.GRAPHS:
                for subgraph in attr.as_graphs():
                    yield from _summarize_graph(subgraph, bindings, depth + 1)


def _summarize_value(value: oir.Value) -> ValueSummary:
    shape = None
    if value.shape is not None:
        shape = tuple(d if isinstance(d, int) else d.value for d in value.shape)
    dtype = None if value.dtype is None else value.dtype.short_name()
    return ValueSummary(
        name=value.name or "", dtype=dtype, shape=shape, initializer=value.is_initializer()
    )


def _attribute_value(attr: oir.Attr) -> Any:
    """A JSON-friendly rendering: numbers and strings as they are, tensors and graphs described."""
    kind = attr.type
    if attr.is_ref():
        return f"@{attr.ref_attr_name}"
    if kind in (oir.AttributeType.INT, oir.AttributeType.FLOAT, oir.AttributeType.STRING):
        return attr.value
    if kind in (oir.AttributeType.INTS, oir.AttributeType.FLOATS, oir.AttributeType.STRINGS):
        return list(attr.value)
    if kind == oir.AttributeType.TENSOR:
        tensor = attr.as_tensor()
        if tensor.size == 1:
            return tensor.numpy().reshape(()).item()
        return f"<tensor {tensor.dtype.short_name()}[{','.join(map(str, tensor.shape.numpy()))}]>"
    if kind == oir.AttributeType.GRAPH:
        return f"<graph {counted(len(attr.as_graph()), 'node')}>"
    if kind == oir.AttributeType.GRAPHS:
        return f"<{counted(len(attr.as_graphs()), 'graph')}>"
    return f"<{kind.name.lower()}>"


def format_listing(summary: ModelSummary, title: str) -> str:
    """The text view: a header, one line per node, then totals."""
    # Models before IR version 4 list every initializer as a graph input too.
    inputs = [value for value in summary.inputs if not value.initializer]
    weight_inputs = len(summary.inputs) - len(inputs)
    lines = [
        f"model {title}",
        f"  fingerprint {summary.fingerprint}",
        f"  ir_version {summary.ir_version}  opsets "
        + ", ".join(f"{domain or 'ai.onnx'}={v}" for domain, v in summary.opsets.items()),
        "inputs",
        *(f"  {value.name}  {value.short()}" for value in inputs),
        *(
            [f"  (+ {counted(weight_inputs, 'initializer')} also listed as inputs)"]
            if weight_inputs
            else []
        ),
        "outputs",
        *(f"  {value.name}  {value.short()}" for value in summary.outputs),
        "nodes",
    ]
    rows = [_node_row(node) for node in summary.nodes]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    for *columns, tail in rows:
        padded = "  ".join(cell.ljust(w) for cell, w in zip(columns, widths, strict=True))
        lines.append(f"  {padded}  {tail}".rstrip())
    lines += [
        "totals",
        f"  nodes   {len(summary.nodes)}  ("
        + ", ".join(f"{op} {count}" for op, count in summary.op_counts.items())
        + ")",
        f"  params  {si(summary.params)} ({si(summary.param_bytes, 'B', binary=True)})",
        f"  flops   {si(summary.flops, 'FLOP')}",
        f"  bytes   {si(summary.bytes_moved, 'B', binary=True)} moved (each tensor once per node)",
    ]
    if summary.uncosted_nodes:
        listed = ", ".join(summary.uncosted_nodes[:_MAX_LISTED_ITEMS])
        more = len(summary.uncosted_nodes) - _MAX_LISTED_ITEMS
        lines.append(
            f"  no cost for {counted(len(summary.uncosted_nodes), 'node')} "
            "(no rule or unknown shape): " + listed + (f" and {more} more" if more > 0 else "")
        )
    return "\n".join(lines)


def _node_row(node: NodeSummary) -> tuple[str, str, str, str]:
    """(id, op, shapes, tail) — the first three are padded into columns."""
    inputs = ", ".join("-" if v is None else v.short() for v in node.inputs)
    outputs = ", ".join(v.short() for v in node.outputs)
    attributes = " ".join(f"{k}={_short_attribute(v)}" for k, v in node.attributes.items())
    flops = "flops ?" if node.flops is None else f"flops {si(node.flops)}"
    indent = "  " * node.depth
    return (indent + node.id, node.op, f"{inputs} -> {outputs}", f"{flops}  {attributes}")


def _short_attribute(value: Any) -> str:
    if isinstance(value, list):
        shown = ",".join(_short_attribute(v) for v in value[:_MAX_LISTED_ITEMS])
        return f"[{shown}{',...' if len(value) > _MAX_LISTED_ITEMS else ''}]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 node`, `3 nodes`: a count with its noun in the right number (`plural` where adding
    an s is wrong)."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
