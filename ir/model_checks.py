"""Checks that turn a malformed or unrunnable ONNX file into one `ModelLoadError` line.

They run before anything trusts the model: protobuf parsing, text fields, operator domains,
and each ONNX node against its schema (ONNX's C++ shape inference can crash on a node that
breaks its schema, so this comes first).
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import onnx_ir as oir
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from ir.errors import ModelLoadError, first_line
from ir.proto_walk import graph_protos

# Domains whose operators some runtime in the toolkit can execute. A model-local function adds
# its own domain. Anything else is a custom op that no target can run.
KNOWN_DOMAINS = frozenset(
    {
        "",
        "ai.onnx",
        "ai.onnx.ml",
        "ai.onnx.training",
        "ai.onnx.preview.training",
        "com.microsoft",
        "com.microsoft.nchwc",
        "com.ms.internal.nhwc",
    }
)
# Default-domain ops onnxruntime runs at opsets where ONNX does not define them (it registers its
# own kernels there): LayerNormalization before opset 17, and SimplifiedLayerNormalization
# (RMSNorm), which ONNX never defines. Fusion passes emit them for onnxruntime.
_EARLY_DEFAULT_DOMAIN_OPS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization"})
# Domains whose schemas ONNX itself defines, so `onnx.checker.check_node` can verify their nodes.
_ONNX_SCHEMA_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


def parse_model_file(path: Path) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot read file: {error.strerror or error}") from error
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise ModelLoadError(
            f"{path}: not an ONNX model (protobuf parse failed: {first_line(error)})"
        ) from error
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise ModelLoadError(f"{path}: not an ONNX model (no graph or no ir_version)")
    if proto.ir_version >= 3 and not proto.opset_import:
        raise ModelLoadError(f"{path}: not a valid ONNX model (no opset_import)")
    bad_field = _first_non_text_field(proto, "model")
    if bad_field is not None:
        raise ModelLoadError(f"{path}: malformed ONNX model: {bad_field} is not valid UTF-8 text")
    return proto


def _first_non_text_field(message: Message, where: str) -> str | None:
    """The first string field holding non-UTF-8 bytes, or None.

    ONNX declares names and op types as proto2 `string`, which protobuf does not validate: bad
    bytes come back as `bytes`, not `str`, and crash whatever reads them later.
    """
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            repeated = not isinstance(value, str | bytes)
            for index, text in enumerate(value if repeated else [value]):
                if not isinstance(text, str):
                    return f"{where}.{field.name}" + (f"[{index}]" if repeated else "")
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            repeated = not isinstance(value, Message)
            for index, child in enumerate(value if repeated else [value]):
                child_where = f"{where}.{field.name}" + (f"[{index}]" if repeated else "")
                found = _first_non_text_field(child, child_where)
                if found is not None:
                    return found
    return None


def check_operators(model: oir.Model, path: Path) -> None:
    """Reject operators from unknown domains and default-domain ops ONNX does not define."""
    functions = {(function.domain, function.name) for function in model.functions.values()}
    known = KNOWN_DOMAINS | {domain for domain, _ in functions}
    opsets = model.opset_imports
    version = opsets.get("", opsets.get("ai.onnx", 1))
    for graph in model.graphs():
        for position, node in enumerate(graph):
            where = f"{path}: node #{position} '{node.name or node.op_type}' ({node.op_type})"
            if node.domain not in known:
                raise ModelLoadError(f"{where}: unknown operator domain '{node.domain}'")
            if (
                node.domain in ("", "ai.onnx")
                and (node.domain, node.op_type) not in functions
                and node.op_type not in _EARLY_DEFAULT_DOMAIN_OPS
                and not onnx.defs.has(node.op_type, version, "")
            ):
                raise ModelLoadError(
                    f"{where}: unsupported operator '{node.op_type}' in ai.onnx opset {version}"
                )


def check_node_schemas(proto: onnx.ModelProto, path: Path) -> None:
    """Check every ONNX-defined node against its schema: arity, required inputs, attribute types.

    ONNX's C++ shape inference trusts these and can crash the whole interpreter (segfault) on a
    node that breaks them, e.g. an empty name for a required input, so they are checked first.
    """
    context = onnx.checker.C.CheckerContext()
    context.ir_version = proto.ir_version
    imports = {entry.domain: entry.version for entry in proto.opset_import}
    if "ai.onnx" in imports:  # ONNX Runtime accepts the long spelling of the default domain
        imports.setdefault("", imports["ai.onnx"])
    context.opset_imports = imports
    scope = onnx.checker.C.LexicalScopeContext()
    functions = {(function.domain, function.name) for function in proto.functions}
    for graph_name, graph in graph_protos(proto.graph, None):
        for position, node in enumerate(graph.node):
            if node.domain not in _ONNX_SCHEMA_DOMAINS or (node.domain, node.op_type) in functions:
                continue
            if node.op_type in _EARLY_DEFAULT_DOMAIN_OPS and not onnx.defs.has(
                node.op_type, imports.get(node.domain, 1), node.domain
            ):
                continue
            try:
                onnx.checker.check_node(_checkable(node), context, scope)
            except onnx.checker.ValidationError as error:
                inside = f" in subgraph '{graph_name}'" if graph_name is not None else ""
                raise ModelLoadError(
                    f"{path}: node #{position} '{node.name or node.op_type}' ({node.op_type})"
                    f"{inside}: {first_line(error)}"
                ) from error


def _checkable(node: onnx.NodeProto) -> onnx.NodeProto:
    """The node as `check_node` should see it: default domain spelled "", subgraphs stubbed.

    `_check_node_schemas` visits subgraphs itself; `check_node` would hold them to the stricter
    rules for a model's top-level inputs and outputs (every one needs a shape), which ONNX
    Runtime does not require.
    """
    graph_types = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    has_subgraphs = any(attribute.type in graph_types for attribute in node.attribute)
    if node.domain != "ai.onnx" and not has_subgraphs:
        return node
    domain = "" if node.domain == "ai.onnx" else node.domain
    stripped = onnx.NodeProto(
        op_type=node.op_type, domain=domain, name=node.name, overload=node.overload
    )
    stripped.input.extend(node.input)
    stripped.output.extend(node.output)
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            stripped.attribute.append(
                onnx.helper.make_attribute(attribute.name, onnx.GraphProto(name="stand_in"))
            )
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            stand_ins = [onnx.GraphProto(name="stand_in") for _ in attribute.graphs]
            stripped.attribute.append(
                onnx.helper.make_attribute(
                    attribute.name, stand_ins, attr_type=onnx.AttributeProto.GRAPHS
                )
            )
        else:
            stripped.attribute.append(attribute)
    return stripped


# Fields holding a tensor's values when it has no raw_data.
TYPED_DATA_FIELDS = (
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def check_initializer_sizes(proto: onnx.ModelProto, path: Path) -> None:
    """Every embedded initializer holds as many values as its dims say.

    Protobuf does not tie the two together, and a mismatch only surfaces much later as
    onnxruntime's "corrupted protobuf data".
    """
    for _, graph in graph_protos(proto.graph, None):
        for tensor in graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                continue
            if tensor.data_type not in _KNOWN_DATA_TYPES:
                raise ModelLoadError(
                    f"{path}: initializer '{tensor.name}' has unknown data type {tensor.data_type}"
                )
            elements = math.prod(tensor.dims)
            found, expected = _stored_size(tensor, elements)
            if found is not None and found != expected:
                raise ModelLoadError(
                    f"{path}: initializer '{tensor.name}' has dims {list(tensor.dims)} "
                    f"({elements} elements) but holds {found} {_unit(tensor)} "
                    f"(expected {expected})"
                )


_KNOWN_DATA_TYPES = frozenset(
    value
    for value in onnx.TensorProto.DataType.values()
    if value != onnx.TensorProto.UNDEFINED and value in onnx.helper.get_all_tensor_dtypes()
)


def _stored_size(tensor: onnx.TensorProto, elements: int) -> tuple[int | None, int]:
    """(what the tensor holds, what its dims need), in bytes for raw data, else in entries."""
    data_type = tensor.data_type
    if tensor.HasField("raw_data"):
        bits = onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize * 8
        if data_type in _SUB_BYTE_BITS:
            bits = _SUB_BYTE_BITS[data_type]
        return len(tensor.raw_data), math.ceil(elements * bits / 8)
    for field in TYPED_DATA_FIELDS:
        count = len(getattr(tensor, field))
        if count:
            per_element = 2 if data_type in _COMPLEX_TYPES else 1
            if data_type in _SUB_BYTE_BITS:  # packed into int32 entries
                return count, math.ceil(elements * _SUB_BYTE_BITS[data_type] / 8)
            return count, elements * per_element
    return None, elements  # no data at all: an empty tensor or a segment


def _unit(tensor: onnx.TensorProto) -> str:
    return "bytes" if tensor.HasField("raw_data") else "values"


_COMPLEX_TYPES = frozenset({onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128})
_SUB_BYTE_BITS = {
    onnx.TensorProto.INT4: 4,
    onnx.TensorProto.UINT4: 4,
    onnx.TensorProto.FLOAT4E2M1: 4,
    onnx.TensorProto.INT2: 2,
    onnx.TensorProto.UINT2: 2,
}
