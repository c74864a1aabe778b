"""Reading ONNX files into the IR and writing them back.

Loading is the toolkit's front door, so it turns every way a file can be wrong (missing,
not protobuf, not a model, truncated, external data gone, operators from an unknown domain) into
one `ModelLoadError` line. A loaded model has inferred types and shapes on every value ONNX can
infer (symbolic dims stay symbolic) and a stable id on every node.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import onnx
import onnx_ir as oir

from ir.errors import ModelLoadError, first_line, root_cause
from ir.model_checks import (
    check_initializer_sizes,
    check_node_schemas,
    check_operators,
    parse_model_file,
)
from ir.node_ids import assign_node_ids
from ir.ops import infer_missing_shapes
from ir.shape_inference import infer_value_types

# The ONNX protobuf limit; larger models must keep their weights in an external data file.
_PROTOBUF_LIMIT_BYTES = 2**31 - 1
_EXTERNAL_DATA_MARGIN_BYTES = 64 * 2**20


def load_model(
    path: str | os.PathLike[str],
    *,
    infer_shapes: bool = True,
    bindings: Mapping[str, int] | None = None,
) -> oir.Model:
    """Load an ONNX file (with external data) into the IR, or raise a one-line ModelLoadError.

    `bindings` fix named symbolic dims of the graph inputs (e.g. {"batch": 1}) before shape
    inference, so shape chains that depend on them (Shape -> Concat -> Reshape) get static.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, expected an ONNX file")
    proto = parse_model_file(path)
    check_initializer_sizes(proto, path)
    if bindings:
        _bind_input_dims(proto, bindings)
    try:
        model = oir.serde.deserialize_model(proto)
    except Exception as error:  # any malformed field surfaces here as some exception type
        raise ModelLoadError(
            f"{path}: malformed ONNX model: {first_line(root_cause(error))}"
        ) from error
    _attach_external_data(model, path)
    check_operators(model, path)
    check_node_schemas(proto, path)
    if infer_shapes:
        infer_value_types(model, proto, path)
        infer_missing_shapes(model)
    assign_node_ids(model)
    return model


def _bind_input_dims(proto: onnx.ModelProto, bindings: Mapping[str, int]) -> None:
    for value in [*proto.graph.input, *proto.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in bindings:
                dim.dim_value = bindings[dim.dim_param]


def _attach_external_data(model: oir.Model, path: Path) -> None:
    """Point external tensors at the model's folder and check that their bytes exist."""
    base_dir = path.parent
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if not isinstance(tensor, oir.ExternalTensor):
                continue
            tensor.base_dir = base_dir
            data_file = base_dir / tensor.location
            try:
                inside = data_file.resolve().is_relative_to(base_dir.resolve())
            except (OSError, ValueError) as error:  # e.g. a NUL byte in the location
                raise ModelLoadError(
                    f"{path}: initializer '{value.name}': bad external data location "
                    f"{tensor.location!r}: {error}"
                ) from error
            if not inside:
                raise ModelLoadError(
                    f"{path}: initializer '{value.name}': external data location "
                    f"'{tensor.location}' is outside the model's folder {base_dir}"
                )
            if (tensor.offset or 0) < 0 or (tensor.length or 0) < 0:
                raise ModelLoadError(
                    f"{path}: initializer '{value.name}': external data has a negative "
                    "offset or length"
                )
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


def save_model(
    model: oir.Model, path: str | os.PathLike[str], *, external_data: bool | None = None
) -> Path:
    """Write the model atomically: a temp file in the same folder, then a rename.

    Weights go to `<name>.data` beside the model when asked, or when they would not fit in one
    protobuf. A failure leaves no partial file at `path`.
    """
    path = Path(path)
    if external_data is None:
        limit = _PROTOBUF_LIMIT_BYTES - _EXTERNAL_DATA_MARGIN_BYTES
        external_data = _initializer_bytes(model) > limit
    path.parent.mkdir(parents=True, exist_ok=True)
    data_name = f"{path.name}.data"
    if external_data:
        # The model may still read weights from the data file about to be replaced.
        _load_external_tensors(model, only_from=path.parent / data_name)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as staging:
        staged = Path(staging) / path.name
        if external_data:
            oir.save(model, staged, external_data=data_name)
            os.replace(Path(staging) / data_name, path.parent / data_name)
        else:
            with _embedded_weights(model):
                oir.save(model, staged)
        os.replace(staged, path)
    return path


def _external_values(model: oir.Model) -> Iterator[oir.Value]:
    for graph in model.graphs():
        for value in graph.initializers.values():
            if isinstance(value.const_value, oir.ExternalTensor):
                yield value


def _load_external_tensors(model: oir.Model, *, only_from: Path) -> None:
    """Read into memory the weights stored in `only_from`, so overwriting that file is safe."""
    for value in list(_external_values(model)):
        tensor = value.const_value
        if Path(tensor.path).resolve() == only_from.resolve():
            data = tensor.numpy().copy()
            tensor.release()
            value.const_value = oir.Tensor(data, name=tensor.name, dtype=tensor.dtype)


@contextlib.contextmanager
def _embedded_weights(model: oir.Model) -> Iterator[None]:
    """Temporarily hold external weights in memory, so an embedded save really embeds them.

    Otherwise the saved file would point at the data file by a path relative to the folder the
    model came from, which is wrong (or missing) anywhere else.
    """
    swapped = [(value, value.const_value) for value in _external_values(model)]
    try:
        for value, tensor in swapped:
            value.const_value = oir.Tensor(tensor.numpy(), name=tensor.name, dtype=tensor.dtype)
        yield
    finally:
        for value, tensor in swapped:
            value.const_value = tensor


def _initializer_bytes(model: oir.Model) -> int:
    total = 0
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                total += value.const_value.nbytes
    return total


def copy_model(model: oir.Model) -> oir.Model:
    """An independent deep copy (graph, ids and weights): for passes run on a trial basis."""
    return oir.serde.deserialize_model(oir.serde.serialize_model(model))
