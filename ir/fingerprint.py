"""Content fingerprint of a model.

The fingerprint is what the audit log and every result file use to say "these numbers came from
exactly this IR". It is the sha256 of a canonical serialization: the deterministic protobuf
encoding of the model with its weight bytes hashed separately (so a model hashes the same whether
its weights are embedded or in an external file) and with node ids and provenance left out (they
record history, not content).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import onnx
import onnx_ir as oir

from ir.model_checks import TYPED_DATA_FIELDS
from ir.node_ids import NODE_ID_KEY, PROVENANCE_KEY

_HISTORY_KEYS = frozenset({NODE_ID_KEY, PROVENANCE_KEY})
_TENSOR_DATA_FIELDS = ("raw_data", *TYPED_DATA_FIELDS, "external_data")


def fingerprint(model: oir.Model) -> str:
    """`sha256:<hex>` of the model's canonical serialization; equal across runs and processes."""
    digest = hashlib.sha256()
    proto = oir.to_proto(model)
    for graph_proto, graph in _graph_pairs(proto.graph, model.graph):
        _strip_history(graph_proto)
        for tensor_proto in graph_proto.initializer:
            tensor = graph.initializers[tensor_proto.name].const_value
            _update_framed(digest, tensor_proto.name.encode())
            _update_tensor_data(digest, tensor)
            for field in _TENSOR_DATA_FIELDS:
                tensor_proto.ClearField(field)
            tensor_proto.ClearField("data_location")
    for function in proto.functions:
        for node in function.node:
            _strip_node_history(node)
    digest.update(proto.SerializeToString(deterministic=True))
    return f"sha256:{digest.hexdigest()}"


def _update_framed(digest: hashlib._Hash, data: bytes) -> None:
    """Hash `data` behind its length, so consecutive pieces cannot shift into each other."""
    digest.update(len(data).to_bytes(8, "little"))
    digest.update(data)


def _update_tensor_data(digest: hashlib._Hash, tensor: oir.TensorProtocol | None) -> None:
    """Hash a tensor's values; string tensors element by element (they have no `tobytes`)."""
    if tensor is None:
        _update_framed(digest, b"")
    elif tensor.dtype == oir.DataType.STRING:
        strings = tensor.string_data()
        digest.update(len(strings).to_bytes(8, "little"))
        for item in strings:
            _update_framed(digest, item)
    else:
        _update_framed(digest, tensor.tobytes())


def _graph_pairs(
    graph_proto: onnx.GraphProto, graph: oir.Graph
) -> Iterator[tuple[onnx.GraphProto, oir.Graph]]:
    """Each graph proto with the IR graph it was serialized from, subgraphs included.

    Walks both in step, node by node and attribute by attribute, so the pairing does not depend
    on the order in which onnx_ir happens to list subgraphs.
    """
    yield graph_proto, graph
    for node_proto, node in zip(graph_proto.node, graph, strict=True):
        for attribute_proto in node_proto.attribute:
            if attribute_proto.type == onnx.AttributeProto.GRAPH:
                subgraph = node.attributes[attribute_proto.name].as_graph()
                yield from _graph_pairs(attribute_proto.g, subgraph)
            elif attribute_proto.type == onnx.AttributeProto.GRAPHS:
                subgraphs = node.attributes[attribute_proto.name].as_graphs()
                for subgraph_proto, subgraph in zip(attribute_proto.graphs, subgraphs, strict=True):
                    yield from _graph_pairs(subgraph_proto, subgraph)


def _strip_history(graph: onnx.GraphProto) -> None:
    for node in graph.node:
        _strip_node_history(node)


def _strip_node_history(node: onnx.NodeProto) -> None:
    kept = [entry for entry in node.metadata_props if entry.key not in _HISTORY_KEYS]
    if len(kept) != len(node.metadata_props):
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
