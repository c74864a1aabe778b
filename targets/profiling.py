"""The optional profiling hook of the target plugin API: per-layer times in the IR's names.

A compiler's own profiler names what it ran in its own terms (onnxruntime's fused node names,
TVM's PrimFuncs, OpenVINO's runtime layers). A target that has one implements
`ProfilingTarget.profile`: it runs the session `runs` times with its profiler on and returns one
`LayerTiming` per layer it ran, each with the IR node ids it covers (the model as compiled, so
after the pipeline). Time a target cannot map back to IR nodes stays in the profile as a layer
with no nodes, never dropped. Targets without a profiler simply do not implement it; the runner
then says "no per-layer profile".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from passes.base import PassConfig
    from targets.api import CompiledModel


@dataclass(frozen=True)
class LayerTiming:
    """One layer as the target's profiler reports it.

    `name`: the target's own name for it (a kernel, a PrimFunc, a runtime layer); `kind`: the
    target's layer or kernel type ("Conv", "fused_conv2d_add_relu", "Convolution"); `nodes`:
    the IR node ids it executes, () when the target's name could not be mapped back;
    `times_ms`: its time in each profiled run, in run order (a layer executed several times in
    one run counts its sum); `detail`: what else the profiler says (kernel, precision)."""

    name: str
    kind: str
    nodes: tuple[str, ...]
    times_ms: tuple[float, ...]
    detail: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetProfile:
    """A profiled session: its layers, and each run's end-to-end latency measured around the
    same runs (so the layers' sum can be checked against it: the gap is the framework's own
    overhead, or time the profiler does not see). `source` names the profiler."""

    source: str
    layers: tuple[LayerTiming, ...]
    end_to_end_ms: tuple[float, ...]


class NotProfilable(Exception):
    """Raised by a profiler that cannot profile this compiled model (say why, in one line)."""


class ProfilingTarget(ABC):
    """Mixin for a `Target` with a per-layer profiler."""

    def profiling_config(self, config: PassConfig) -> PassConfig:
        """The target config to compile with for profiling: a runtime whose counters cost time
        in every layer turns them on here only (OpenVINO's PERF_COUNT), so ordinary runs never
        pay for them. The default compiles as for any run."""
        return config

    @abstractmethod
    def profile(
        self,
        compiled: CompiledModel,
        batch_size: int,
        feeds: Mapping[str, np.ndarray],
        runs: int,
    ) -> TargetProfile:
        """Load `compiled` for `batch_size` with the profiler on, run `feeds` `runs` times
        (after one warm-up run that is not reported) and return every layer's time per run."""


def profiler_of(target: object) -> ProfilingTarget | None:
    """The target's profiling hook, or None for a target without one."""
    return target if isinstance(target, ProfilingTarget) else None
