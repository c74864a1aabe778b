"""Reading ONNX files into the IR and writing them back.

Loading is the toolkit's front door, so it turns every way a file can be wrong (missing,
not protobuf, not a model, truncated, external data gone, operators from an unknown domain) into
one `ModelLoadError` line. A loaded model has inferred types and shapes on every value ONNX can
infer (symbolic dims stay symbolic) and a stable id on every node.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError
from onnx_ir.passes.common import ShapeInferencePass

from ir.errors import ModelLoadError
from ir.node_ids import assign_node_ids

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
# The ONNX protobuf limit; larger models must keep their weights in an external data file.
_PROTOBUF_LIMIT_BYTES = 2**31 - 1
_EXTERNAL_DATA_MARGIN_BYTES = 64 * 2**20


def load_model(path: str | os.PathLike[str], *, infer_shapes: bool = True) -> ir.Model:
    """Load an ONNX file (with external data) into the IR, or raise a one-line ModelLoadError."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, expected an ONNX file")
    proto = _parse(path)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as error:  # any malformed field surfaces here as some exception type
        raise ModelLoadError(f"{path}: malformed ONNX model: {_first_line(error)}") from error
    _attach_external_data(model, path)
    _check_operators(model, path)
    if infer_shapes:
        ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
    assign_node_ids(model)
    return model


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _parse(path: Path) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeError, ValueError) as error:
        raise ModelLoadError(
            f"{path}: not an ONNX model (protobuf parse failed: {_first_line(error)})"
        ) from error
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise ModelLoadError(f"{path}: not an ONNX model (no graph or no ir_version)")
    if proto.ir_version >= 3 and not proto.opset_import:
        raise ModelLoadError(f"{path}: not a valid ONNX model (no opset_import)")
    return proto


def _attach_external_data(model: ir.Model, path: Path) -> None:
    """Point external tensors at the model's folder and check that their bytes exist."""
    base_dir = path.parent
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if not isinstance(tensor, ir.ExternalTensor):
                continue
            tensor.base_dir = base_dir
            data_file = base_dir / tensor.location
            if not data_file.is_file():
                raise ModelLoadError(
                    f"{path}: initializer '{value.name}': external data file "
                    f"'{tensor.location}' not found in {base_dir}"
                )
            end = (tensor.offset or 0) + (tensor.length or 0)
            if end > data_file.stat().st_size:
                raise ModelLoadError(
                    f"{path}: initializer '{value.name}': external data file "
                    f"'{tensor.location}' is truncated (needs {end} bytes)"
                )


def _check_operators(model: ir.Model, path: Path) -> None:
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
                and not onnx.defs.has(node.op_type, version, "")
            ):
                raise ModelLoadError(
                    f"{where}: unsupported operator '{node.op_type}' in ai.onnx opset {version}"
                )


def save_model(
    model: ir.Model, path: str | os.PathLike[str], *, external_data: bool | None = None
) -> Path:
    """Write the model atomically: a temp file in the same folder, then a rename.

    Weights go to `<name>.data` beside the model when asked, or when they would not fit in one
    protobuf. A failure leaves no partial file at `path`.
    """
    path = Path(path)
    if external_data is None:
        external_data = _initializer_bytes(model) > _PROTOBUF_LIMIT_BYTES - _EXTERNAL_DATA_MARGIN_BYTES
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as staging:
        staged = Path(staging) / path.name
        data_name = f"{path.name}.data"
        if external_data:
            ir.save(model, staged, external_data=data_name)
            os.replace(Path(staging) / data_name, path.parent / data_name)
        else:
            ir.save(model, staged)
        os.replace(staged, path)
    return path


def _initializer_bytes(model: ir.Model) -> int:
    total = 0
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                total += value.const_value.nbytes
    return total
