"""The target plugin API: what a vendor implements to run the toolkit's IR on its hardware.

A target is the seed's "compile backend + runtime backend" pair: `compile` turns an IR model into
an artifact (reporting what it did in the pass audit format), `load` turns the artifact into a
session for one batch size, and `Session.run` runs it. A target also declares what it can run
(ops and dtypes), so the runner can check a model before compiling and send unsupported nodes to
the reference path (see `targets/partition.py`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ir.capabilities import Capabilities as Capabilities  # re-exported: the plugin API
from ir.capabilities import FusedOp as FusedOp
from passes.base import PassConfig

if TYPE_CHECKING:  # numpy and onnx_ir load when used: `runner targets list` imports this module
    import numpy as np
    import onnx_ir as oir

    from passes.audit import PassRecord


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

    def prepare(self, model: oir.Model) -> oir.Model:
        """The model as this target will see it, before claims are checked and the graph is
        partitioned (e.g. the target's own lowering). The default leaves it as it is; an
        override must not mutate `model`."""
        return model

    def unsupported_reason(self, node: oir.Node, capabilities: Capabilities) -> str | None:
        """Why this target cannot run `node`, or None. Such nodes fall back to the reference
        path. The default checks the declared ops and the integer/bool tensor types (index and
        shape plumbing); override it for conditions on attributes (e.g. only group=1 Conv)."""
        if not capabilities.runs_op(node.domain, node.op_type):
            return f"{node.domain + '.' if node.domain else ''}{node.op_type} is not supported"
        for _, dtype in activation_dtypes(node):
            if dtype not in capabilities.dtypes and not is_floating(dtype):
                return f"{node.op_type} on {dtype} is not supported"
        return None

    @abstractmethod
    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        """Compile the (unpartitioned) model; never mutates it."""

    @abstractmethod
    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        """A session for `batch_size` from this target's artifact."""


def graph_io_names(model: oir.Model) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(input names without initializers, output names) in graph order."""
    inputs = tuple(v.name or "" for v in model.graph.inputs if not v.is_initializer())
    return inputs, tuple(v.name or "" for v in model.graph.outputs)


def value_dtypes(model: oir.Model) -> list[tuple[oir.Value, str]]:
    """Every non-constant tensor of the main graph (real inputs, node outputs) with its dtype."""
    found: dict[oir.Value, str] = {}
    for node in model.graph:
        found.update(activation_dtypes(node))
    return list(found.items())


def activation_dtypes(node: oir.Node) -> list[tuple[oir.Value, str]]:
    """The node's input and output tensors that are not constants, with their dtype names.

    Constants (initializers) are data the compiler converts; sequences and optionals are not
    tensors and are left to the op check."""
    import onnx_ir as oir

    found = []
    for value in [*node.inputs, *node.outputs]:
        if value is None or value.is_initializer() or not isinstance(value.type, oir.TensorType):
            continue
        if value.dtype is not None and value.dtype != oir.DataType.UNDEFINED:
            found.append((value, dtype_name(value.dtype)))
    return found


def dtype_name(dtype: oir.DataType) -> str:
    """numpy's name for the dtype (bfloat16, float8_e4m3fn via ml_dtypes); \"string\"."""
    import numpy as np
    import onnx_ir as oir

    if dtype == oir.DataType.STRING:
        return "string"
    try:
        return np.dtype(dtype.numpy()).name
    except TypeError:  # ONNX types numpy lacks (bfloat16, float8): their ONNX name
        return dtype.name.lower()


def is_floating(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))
