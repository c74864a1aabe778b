"""The `example-numpy` target: what an ASIC vendor's plugin looks like, with numpy standing in
for the device. `compile` checks that every node is one the "SDK" runs and lowers the graph to
a plan (steps in topological order, each carrying its weights); `load` wraps the plan in a
session that interprets it with the kernels in `kernels.py`. A real plugin would call its
compiler in `compile` and drive its device in `Session.run`; the shape stays the same.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as oir

from asicperf_example_target import __version__
from asicperf_example_target.kernels import KERNELS
from ir.errors import AsicperfError, first_line
from ir.fingerprint import fingerprint
from ir.node_ids import node_id
from passes.audit import config_to_json
from passes.base import PassConfig
from targets.api import (
    Capabilities,
    CompiledModel,
    FusedOp,
    Session,
    Target,
    TargetInfo,
    graph_io_names,
    value_dtypes,
)
from targets.compile_record import artifact_digest, compile_record

# Add, Mul and Gemm took a `broadcast` attribute before opset 7; the kernels do not.
MIN_OPSET = 7
# What fusion passes may emit for this target beyond standard ONNX: its Gelu kernel runs at any
# opset, so recognize-gelu{target=example-numpy} replaces a decomposed GELU by one Gelu even
# below opset 20, where ONNX has none.
FUSED_OPS = (FusedOp("Gelu"),)


@dataclass(frozen=True)
class NumpyTargetConfig(PassConfig):
    check_finite: bool = False  # stop at the first step whose output holds NaN or Inf


@dataclass(frozen=True)
class Step:
    """One node as the device runs it: everything it needs, nothing of the IR."""

    node_id: str
    op: str
    inputs: tuple[str, ...]  # "" for an omitted optional input
    output: str  # every op in the list has exactly one output
    attributes: dict[str, Any]
    constants: dict[str, np.ndarray]  # the weights among `inputs`


@dataclass(frozen=True)
class Plan:
    """The artifact: the steps in an order where every input exists before it is read."""

    opset: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    steps: tuple[Step, ...]

    def to_bytes(self) -> bytes:
        """A deterministic serialization to fingerprint; node ids are left out, as in the IR's
        fingerprint, so the same computation has the same artifact fingerprint."""
        layout = {
            "opset": self.opset,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "steps": [
                {
                    "op": step.op,
                    "inputs": step.inputs,
                    "output": step.output,
                    "attributes": step.attributes,
                    "constants": {n: [a.dtype.name, a.shape] for n, a in step.constants.items()},
                }
                for step in self.steps
            ],
        }
        weights = (
            array.tobytes() for step in self.steps for _, array in sorted(step.constants.items())
        )
        return b"".join([json.dumps(layout, sort_keys=True).encode(), *weights])


class NumpyTarget(Target):
    name = "example-numpy"
    config_type = NumpyTargetConfig

    def info(self) -> TargetInfo:
        return TargetInfo(
            self.name,
            f"{__version__} (numpy {np.__version__})",
            "cpu (numpy interpreter)",
            available=True,
            hardware=None,
        )

    def capabilities(self) -> Capabilities:
        return Capabilities(
            frozenset(("", op) for op in KERNELS), frozenset({"float32"}), fused_ops=FUSED_OPS
        )

    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        assert isinstance(config, NumpyTargetConfig)
        start = time.perf_counter()
        opset = self._check(model)
        plan = _plan(model, opset)
        wall_ms = (time.perf_counter() - start) * 1e3
        steps = len(plan.steps)
        record = compile_record(
            target=self.name,
            config=config_to_json(config),
            ir_fingerprint=fingerprint(model),
            artifact_fingerprint=artifact_digest(plan.to_bytes()),
            wall_ms=wall_ms,
            nodes=(steps, steps),
            extra={"precision": "float32"},
        )
        return CompiledModel(
            self.name, record.in_fingerprint, record.config, plan, record, plan.inputs, plan.outputs
        )

    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        """The plan is shape-generic, so one session serves every batch size."""
        config = NumpyTargetConfig(**compiled.options)
        return NumpySession(compiled.payload, config, self.name)

    def _check(self, model: oir.Model) -> int:
        """The model's opset, once every node, dtype and Conv is one this target runs."""
        capabilities = self.capabilities()
        graph = model.graph
        unsupported = [
            f"{node_id(node)} ({_qualified_op(node)})"
            for node in graph
            if not capabilities.runs_op(node.domain, node.op_type)
        ]
        if unsupported:
            nodes = "node" if len(unsupported) == 1 else "nodes"
            raise AsicperfError(
                f"target '{self.name}' cannot run {nodes} {', '.join(unsupported)}: "
                f"not in its op list ({', '.join(sorted(KERNELS))})"
            )
        opsets = graph.opset_imports
        opset = opsets.get("", opsets.get("ai.onnx", 0))
        if opset < MIN_OPSET:
            raise AsicperfError(
                f"target '{self.name}' runs ONNX opset {MIN_OPSET} or later, the model has {opset}"
            )
        for value in [*graph.inputs, *(output for node in graph for output in node.outputs)]:
            if value.type is not None and not isinstance(value.type, oir.TensorType):
                raise AsicperfError(
                    f"target '{self.name}' runs tensors only: {_where(value)} is {value.type}"
                )
        for value, dtype in value_dtypes(model):
            if dtype not in capabilities.dtypes:
                raise AsicperfError(
                    f"target '{self.name}' runs float32 only: {_where(value)} is {dtype}"
                )
        for node in graph:
            problem = self.unsupported_reason(node, capabilities)
            if problem is not None:
                raise AsicperfError(
                    f"target '{self.name}' cannot run node {node_id(node)} ({node.op_type}): "
                    f"{problem}"
                )
        return opset

    def unsupported_reason(self, node: oir.Node, capabilities: Capabilities) -> str | None:
        """Beyond the op list: only 2-D, group=1 convolutions (others fall back)."""
        if node.op_type != "Conv":
            return super().unsupported_reason(node, capabilities)
        group = node.attributes.get_int("group", 1)
        weight_shape = node.inputs[1].shape if node.inputs[1] is not None else None
        if group != 1:
            return f"group={group}, it runs group=1 only"
        if weight_shape is not None and len(weight_shape) != 4:
            return f"{len(weight_shape) - 2}-D convolution, it runs 2-D only"
        return super().unsupported_reason(node, capabilities)


def _plan(model: oir.Model, opset: int) -> Plan:
    """The steps in graph order, which the IR keeps topological; checked while building."""
    graph = model.graph
    inputs, outputs = graph_io_names(model)
    weights = {
        name: value.const_value.numpy()
        for name, value in graph.initializers.items()
        if value.const_value is not None
    }
    ready = set(inputs)
    steps = []
    for node in graph:
        names = tuple("" if value is None else value.name or "" for value in node.inputs)
        early = [name for name in names if name and name not in ready and name not in weights]
        if early:
            raise AsicperfError(
                f"target '{NumpyTarget.name}': node {node_id(node)} ({node.op_type}) reads "
                f"'{early[0]}' before it is produced: the graph is not in topological order"
            )
        output = node.outputs[0].name or ""
        steps.append(
            Step(
                node_id(node),
                node.op_type,
                names,
                output,
                {name: attr.value for name, attr in node.attributes.items()},
                {name: weights[name] for name in names if name in weights},
            )
        )
        ready.add(output)
    return Plan(opset, inputs, outputs, tuple(steps))


def _where(value: oir.Value) -> str:
    producer = value.producer()
    if producer is None:
        return f"graph input '{value.name}'"
    return f"node {node_id(producer)} ({producer.op_type}) output '{value.name}'"


def _qualified_op(node: oir.Node) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


class NumpySession(Session):
    """Interprets a plan step by step; errors name the node that failed."""

    def __init__(self, plan: Plan, config: NumpyTargetConfig, target: str) -> None:
        self._plan = plan
        self._config = config
        self._target = target

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        values: dict[str, np.ndarray] = {}
        for name in self._plan.inputs:
            if name not in feeds:
                raise AsicperfError(f"target '{self._target}': input '{name}' is not fed")
            values[name] = np.asarray(feeds[name])
            if values[name].dtype != np.float32:
                raise AsicperfError(
                    f"target '{self._target}' runs float32 only: input '{name}' is "
                    f"{values[name].dtype.name}"
                )
        for step in self._plan.steps:
            args = [
                step.constants[name] if name in step.constants else values[name] if name else None
                for name in step.inputs
            ]
            try:
                # asarray: numpy gives scalars, not 0-d arrays, for 0-d results
                result = np.asarray(KERNELS[step.op](args, step.attributes, self._plan.opset))
            except ValueError as error:
                raise AsicperfError(
                    f"target '{self._target}' failed at node {step.node_id} ({step.op}): "
                    f"{first_line(error)}"
                ) from error
            if self._config.check_finite and not np.isfinite(result).all():
                raise AsicperfError(
                    f"target '{self._target}': node {step.node_id} ({step.op}) produced NaN or "
                    f"Inf in '{step.output}'"
                )
            values[step.output] = result
        return [values[name] for name in self._plan.outputs]
