"""The target plugin API: what a vendor implements to run the toolkit's IR on its hardware.

A target is the seed's "compile backend + runtime backend" pair: `compile` turns an IR model into
an artifact (reporting what it did in the pass audit format), `load` turns the artifact into a
session for one batch size, and `Session.run` runs it. A target also declares what it can run
(ops and dtypes), so the runner can check a model before compiling and send unsupported nodes to
the reference path (see `targets/partition.py`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import onnx_ir as ir

from passes.audit import PassRecord
from passes.base import PassConfig


@dataclass(frozen=True)
class TargetInfo:
    """What `runner targets list` shows about a target."""

    name: str
    version: str
    device: str
    available: bool
    why_not: str | None = None
    hardware: str | None = None  # slug in the hardware database
    preferred_batch_sizes: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Capabilities:
    """The ops and dtypes a target runs. `ops` holds (domain, op_type) with the default domain
    spelled ""; None means every op ONNX defines (a reference path)."""

    ops: frozenset[tuple[str, str]] | None
    dtypes: frozenset[str]

    def runs_op(self, domain: str, op_type: str) -> bool:
        domain = "" if domain == "ai.onnx" else domain
        return self.ops is None or (domain, op_type) in self.ops


@dataclass(frozen=True)
class CompiledModel:
    """A target's artifact for one IR (by fingerprint) and options, with its compile record."""

    target: str
    ir_fingerprint: str
    options: Mapping[str, Any]
    payload: Any
    record: PassRecord
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    cache_hit: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


class Session(ABC):
    """A loaded artifact that runs inference for one batch size."""

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in graph output order for inputs by name."""


class Target(ABC):
    """Subclass this and register it under the entry-point group `asicperf.targets`."""

    name: ClassVar[str]
    config_type: ClassVar[type[PassConfig]] = PassConfig

    @abstractmethod
    def info(self) -> TargetInfo:
        """Version, device and whether the target can run on this machine (and why not)."""

    @abstractmethod
    def capabilities(self) -> Capabilities:
        """The ops and dtypes this target runs."""

    @abstractmethod
    def compile(self, model: ir.Model, config: PassConfig) -> CompiledModel:
        """Compile the (unpartitioned) model; never mutates it."""

    @abstractmethod
    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        """A session for `batch_size` from this target's artifact."""


def graph_io_names(model: ir.Model) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(input names without initializers, output names) in graph order."""
    inputs = tuple(v.name or "" for v in model.graph.inputs if not v.is_initializer())
    return inputs, tuple(v.name or "" for v in model.graph.outputs)


def value_dtypes(model: ir.Model) -> Sequence[tuple[ir.Value, str]]:
    """Every typed tensor value of the main graph with its numpy dtype name."""
    seen: list[tuple[ir.Value, str]] = []
    values = [*model.graph.inputs, *(out for node in model.graph for out in node.outputs)]
    for value in values:
        if value.dtype is not None and value.dtype != ir.DataType.UNDEFINED:
            seen.append((value, _dtype_name(value.dtype)))
    return seen


def _dtype_name(dtype: ir.DataType) -> str:
    if dtype == ir.DataType.STRING:
        return "string"
    try:
        return np.dtype(dtype.numpy()).name
    except TypeError:  # ONNX types numpy lacks (bfloat16, float8): their ONNX name
        return dtype.name.lower()
