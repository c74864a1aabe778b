"""Content fingerprint of a model.

The fingerprint is what the audit log and every result file use to say "these numbers came from
exactly this IR". It is the sha256 of a canonical serialization: the deterministic protobuf
encoding of the model with its weight bytes hashed separately (so a model hashes the same whether
its weights are embedded or in an external file) and with node ids left out (they record history,
not content).
"""

from __future__ import annotations

import hashlib

import onnx
import onnx_ir as ir

from ir.node_ids import NODE_ID_KEY

_HISTORY_KEYS = frozenset({NODE_ID_KEY})
_TENSOR_DATA_FIELDS = (
    "raw_data",
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
    "external_data",
)


def fingerprint(model: ir.Model) -> str:
    """`sha256:<hex>` of the model's canonical serialization; equal across runs and processes."""
    digest = hashlib.sha256()
    proto = ir.to_proto(model)
    for graph_proto, graph in zip(_graph_protos(proto.graph), model.graphs(), strict=True):
        _strip_history(graph_proto)
        for tensor_proto in graph_proto.initializer:
            tensor = graph.initializers[tensor_proto.name].const_value
            digest.update(tensor_proto.name.encode())
            digest.update(tensor.tobytes() if tensor is not None else b"")
            for field in _TENSOR_DATA_FIELDS:
                tensor_proto.ClearField(field)
            tensor_proto.ClearField("data_location")
    for function in proto.functions:
        for node in function.node:
            _strip_node_history(node)
    digest.update(proto.SerializeToString(deterministic=True))
    return f"sha256:{digest.hexdigest()}"


def _graph_protos(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """The graph and its subgraphs in the order onnx_ir's `Model.graphs()` yields them."""
    graphs = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                graphs.extend(_graph_protos(attribute.g))
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    graphs.extend(_graph_protos(subgraph))
    return graphs


def _strip_history(graph: onnx.GraphProto) -> None:
    for node in graph.node:
        _strip_node_history(node)


def _strip_node_history(node: onnx.NodeProto) -> None:
    kept = [entry for entry in node.metadata_props if entry.key not in _HISTORY_KEYS]
    if len(kept) != len(node.metadata_props):
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
