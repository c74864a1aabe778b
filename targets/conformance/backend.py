"""ONNX's backend API (`onnx.backend.base.Backend`) over any asicperf target.

Tools written against that API, ONNX's own test suite first, can then judge a target exactly as
they judge onnxruntime: `backend_for("onnxruntime").run_model(model, inputs)`. A model goes the
way a user's file goes: the toolkit's loader (same checks, inferred types, node ids), then the
target's `compile` and `load`.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as oir
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from ir.errors import AsicperfError, ModelLoadError
from ir.model_io import load_model
from passes.base import PassConfig
from passes.pipeline import PipelineError, make_config, split_options
from targets.api import CompiledModel, Session, Target, dtype_name, value_dtypes
from targets.registry import get_target


def load_proto(model: onnx.ModelProto) -> oir.Model:
    """Load an in-memory model through the file loader, so it meets the same checks a file does.

    Errors name the model's graph instead of the temporary file it passed through.
    """
    name = model.graph.name or "model"
    with tempfile.TemporaryDirectory(prefix="asicperf-conformance-") as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(model.SerializeToString())
        try:
            return load_model(path)
        except ModelLoadError as error:
            raise ModelLoadError(str(error).replace(str(path), f"model '{name}'")) from error


def claims_gap(target: Target, model: oir.Model) -> str | None:
    """Why the target does not claim to run `model` (the first node it does not run, or a
    tensor type it does not take), or None."""
    capabilities = target.capabilities()
    for graph in model.graphs():
        for node in graph:
            reason = target.unsupported_reason(node, capabilities)
            if reason is not None:
                return f"op {op_label(node.domain, node.op_type)} is not claimed: {reason}"
    for value, dtype in value_dtypes(model):
        if dtype not in capabilities.dtypes:
            return f"dtype {dtype} (of '{value.name}') is not claimed"
    boundary = capabilities.boundary_dtypes
    for value in [*model.graph.inputs, *model.graph.outputs] if boundary is not None else []:
        dtype = dtype_name(value.dtype) if value.dtype is not None else None
        if dtype is not None and dtype not in boundary:
            return f"dtype {dtype} cannot cross the session boundary ('{value.name}')"
    return None


def op_label(domain: str, op_type: str) -> str:
    """How reports name an op: `Relu`, `com.microsoft::FusedConv`."""
    return f"{domain}::{op_type}" if domain not in ("", "ai.onnx") else op_type


class TargetBackendRep(BackendRep):
    """A loaded session of the target, run with ONNX's positional (or by-name) inputs."""

    def __init__(self, session: Session, input_names: Sequence[str]) -> None:
        self._session = session
        self._input_names = tuple(input_names)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Outputs in graph output order; `inputs` is a list in graph input order, or a dict."""
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, Mapping):
            feeds = dict(inputs)
        elif len(inputs) != len(self._input_names):
            raise AsicperfError(
                f"got {len(inputs)} inputs, the model takes {len(self._input_names)}: "
                f"{', '.join(self._input_names)}"
            )
        else:
            feeds = dict(zip(self._input_names, inputs, strict=True))
        return tuple(self._session.run(feeds))


class TargetBackend(Backend):
    """The backend of one target; make one with `backend_for(spec)`.

    Only the "CPU" device: inputs and outputs are host arrays, and which hardware a target runs
    on is its own config (e.g. onnxruntime's `provider`), set in the spec given to `backend_for`
    or as keyword options of `prepare`.
    """

    target: Target
    config: PassConfig

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type == DeviceType.CPU
        except AttributeError:  # a device type ONNX does not know
            return False

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device) and claims_gap(cls.target, load_proto(model)) is None

    @classmethod
    def prepare(
        cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any
    ) -> TargetBackendRep:
        """Load, compile and load a session for batch size 1; `kwargs` set target config fields."""
        return cls.prepare_ir(load_proto(model), device, **kwargs)

    @classmethod
    def prepare_ir(cls, model: oir.Model, device: str = "CPU", **kwargs: Any) -> TargetBackendRep:
        """`prepare` for a model already in the IR (the caller loaded it, e.g. to check claims)."""
        return cls.load(cls.compile_ir(model, device, **kwargs))

    @classmethod
    def compile_ir(cls, model: oir.Model, device: str = "CPU", **kwargs: Any) -> CompiledModel:
        """The target's compile step alone, so a caller can tell its failures from `load`'s."""
        if not cls.supports_device(device):
            raise AsicperfError(f"target '{cls.target.name}': device '{device}' is not supported")
        return cls.target.compile(model, cls._config(kwargs))

    @classmethod
    def load(cls, compiled: CompiledModel) -> TargetBackendRep:
        """The target's session for batch size 1 (ONNX's cases carry their own batch)."""
        return TargetBackendRep(cls.target.load(compiled, batch_size=1), compiled.input_names)

    @classmethod
    def _config(cls, overrides: Mapping[str, Any]) -> PassConfig:
        """The backend's config (from its spec) with `prepare`'s keyword options applied."""
        known = {field.name for field in dataclasses.fields(cls.config)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise AsicperfError(
                f"target '{cls.target.name}' has no option {', '.join(unknown)} "
                f"(options: {', '.join(sorted(known)) or 'none'})"
            )
        return dataclasses.replace(cls.config, **overrides)

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
        **kwargs: Any,
    ) -> tuple[Any, ...]:
        """Run one node as a one-node model at `opset_version` (default: the op's latest)."""
        opset_version = kwargs.pop("opset_version", None)
        model = node_model(node, inputs, outputs_info, opset_version)
        return cls.run_model(model, inputs, device, **kwargs)


def node_model(
    node: onnx.NodeProto,
    inputs: Sequence[Any] | Mapping[str, Any],
    outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
    opset_version: int | None = None,
) -> onnx.ModelProto:
    """A model of just `node`, its inputs typed from the arrays given (a list: a sequence)."""
    names = [name for name in node.input if name]
    arrays = [inputs[name] for name in names] if isinstance(inputs, Mapping) else list(inputs)
    graph_inputs = [_value_info(name, array) for name, array in zip(names, arrays, strict=True)]
    outputs = [name for name in node.output if name]
    if outputs_info is None:
        graph_outputs = [onnx.ValueInfoProto(name=name) for name in outputs]
    else:
        graph_outputs = [
            onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape
            )
            for name, (dtype, shape) in zip(outputs, outputs_info, strict=True)
        ]
    if opset_version is None:
        opset_version = onnx.defs.get_schema(node.op_type, domain=node.domain).since_version
    graph = onnx.helper.make_graph([node], f"{node.op_type}_node", graph_inputs, graph_outputs)
    opset = onnx.helper.make_operatorsetid(node.domain, opset_version)
    return onnx.helper.make_model_gen_version(graph, opset_imports=[opset])


def _value_info(name: str, value: Any) -> onnx.ValueInfoProto:
    if isinstance(value, list):
        element = onnx.helper.np_dtype_to_tensor_dtype(np.asarray(value[0]).dtype)
        sequence = onnx.helper.make_sequence_type_proto(
            onnx.helper.make_tensor_type_proto(element, None)
        )
        return onnx.helper.make_value_info(name, sequence)
    array = np.asarray(value)
    element = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
    return onnx.helper.make_tensor_value_info(name, element, array.shape)


@functools.cache
def backend_for(spec: str) -> type[TargetBackend]:
    """The Backend class of a registered target. `spec` is its name, with options the way
    `runner run --target` takes them: `"tvm{cache=false}"`."""
    try:
        name, options = split_options(spec, spec)
    except PipelineError as error:
        raise AsicperfError(f"target '{spec}': {error}") from None
    target = get_target(name)
    config = make_config(type(target), options, kind="target")
    return type(f"TargetBackend[{spec}]", (TargetBackend,), {"target": target, "config": config})
