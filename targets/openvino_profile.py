"""OpenVINO's per-layer performance counters, as the `openvino` target's per-layer profile.

Counting costs time in every layer, so only a model compiled for profiling has them
(`OpenVinoConfig.perf_count`, which `OpenVinoTarget.profiling_config` sets): its compile record
maps each runtime layer to the IR nodes it executes (`targets.openvino_runtime.layer_nodes`,
from each layer's original op names), and the counters name the same layers. Layers the record
leaves out (OpenVINO's own Reorders, data layers) keep their time with no nodes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from targets.api import CompiledModel
from targets.openvino_runtime import OpenVinoSession, runtime_layers
from targets.profiling import LayerTiming, NotProfilable, TargetProfile

if TYPE_CHECKING:
    import numpy as np

_SOURCE = "OpenVINO performance counters"


def profile_openvino(
    name: str, compiled: CompiledModel, feeds: Mapping[str, np.ndarray], runs: int
) -> TargetProfile:
    """One warm-up run, then `runs` runs timed end to end, each executed layer's time per run
    (the growth of its total, see `_totals`); detail: its kernel (`exec_type`) and runtime
    precision."""
    if not compiled.options.get("perf_count"):
        raise NotProfilable(
            "the model was compiled without OpenVINO's performance counters (perf_count=true)"
        )
    profiled = compiled.payload
    session = OpenVinoSession(profiled, compiled.output_names, name)
    nodes = {layer["name"]: tuple(layer["nodes"]) for layer in compiled.record.extra["layers"]}
    precisions = {layer.name: layer.precision for layer in runtime_layers(profiled)}
    session.run(feeds)
    before = _totals(session.profiling_info(), inferences=1)
    end_to_end: list[float] = []
    spent: dict[str, list[float]] = {}
    for run in range(runs):
        start = time.perf_counter()
        session.run(feeds)
        end_to_end.append((time.perf_counter() - start) * 1e3)
        totals = _totals(session.profiling_info(), inferences=run + 2)
        for layer, total in totals.items():
            times = spent.setdefault(layer, [0.0] * runs)
            times[run] = max(total - before.get(layer, 0), 0) / 1e3
        before = totals
    kinds = {c.node_name: (c.node_type, c.exec_type) for c in session.profiling_info()}
    layers = tuple(
        LayerTiming(
            layer,
            kinds[layer][0],
            nodes.get(layer, ()),
            tuple(times),
            {"kernel": kinds[layer][1], "precision": precisions.get(layer, "")},
        )
        for layer, times in spent.items()
    )
    return TargetProfile(_SOURCE, layers, tuple(end_to_end))


def _totals(counters: list[Any], inferences: int) -> dict[str, int]:
    """Microseconds each executed layer has taken over all `inferences` so far: a counter's
    `real_time` is its layer's mean over every inference of the compiled model, in whole
    microseconds (so a total is exact to `inferences` microseconds)."""
    return {
        c.node_name: round(c.real_time.total_seconds() * 1e6) * inferences
        for c in counters
        if c.status.name == "EXECUTED"
    }
