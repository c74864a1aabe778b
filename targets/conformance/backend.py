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
import onnx_ir as ir
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from ir.errors import AsicperfError, ModelLoadError
from ir.model_io import load_model
from targets.api import Session, Target, value_dtypes
from targets.registry import get_target


def load_proto(model: onnx.ModelProto) -> ir.Model:
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


def claims_gap(target: Target, model: ir.Model) -> str | None:
    """Why the target does not claim to run `model` (first unclaimed op or dtype), or None."""
    capabilities = target.capabilities()
    for graph in model.graphs():
        for node in graph:
            if not capabilities.runs_op(node.domain, node.op_type):
                return f"op {_op_name(node.domain, node.op_type)} is not claimed"
    for value, dtype in value_dtypes(model):
        if dtype not in capabilities.dtypes:
            return f"dtype {dtype} (of '{value.name}') is not claimed"
    return None


def _op_name(domain: str, op_type: str) -> str:
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
    """The backend of one target; make one with `backend_for(name)`.

    Only the "CPU" device: inputs and outputs are host arrays, and which hardware a target runs
    on is its own config (e.g. onnxruntime's `provider`), passed as keyword options to `prepare`.
    """

    target: Target

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
    def prepare_ir(cls, model: ir.Model, device: str = "CPU", **kwargs: Any) -> TargetBackendRep:
        """`prepare` for a model already in the IR (the caller loaded it, e.g. to check claims)."""
        if not cls.supports_device(device):
            raise AsicperfError(f"target '{cls.target.name}': device '{device}' is not supported")
        compiled = cls.target.compile(model, cls._config(kwargs))
        session = cls.target.load(compiled, batch_size=1)
        return TargetBackendRep(session, compiled.input_names)

    @classmethod
    def _config(cls, options: Mapping[str, Any]) -> Any:
        config_type = cls.target.config_type
        known = {field.name for field in dataclasses.fields(config_type)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise AsicperfError(
                f"target '{cls.target.name}' has no option {', '.join(unknown)} "
                f"(options: {', '.join(sorted(known)) or 'none'})"
            )
        return config_type(**options)

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
def backend_for(target_name: str) -> type[TargetBackend]:
    """The Backend class of the registered target `target_name` (UnknownTargetError if none)."""
    target = get_target(target_name)
    return type(f"TargetBackend[{target_name}]", (TargetBackend,), {"target": target})
