"""A target with a per-layer profiler whose times are known: onnxruntime underneath, each IR node
reported as one layer taking LAYER_MS[op type] in the median run, plus one layer the profiler
cannot name (UNMAPPED_MS), and each run's end-to-end time the layers' sum plus OVERHEAD_MS.
Tests check the profile's figures against these numbers exactly."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import onnx_ir as oir

from ir.node_ids import node_id
from passes.base import PassConfig
from targets.api import CompiledModel
from targets.onnxruntime_target import OnnxRuntimeTarget
from targets.profiling import LayerTiming, ProfilingTarget, TargetProfile

LAYER_MS = {"MatMul": 2.0, "Add": 0.5, "Gemm": 2.0, "Relu": 0.25, "Softmax": 1.0}
UNMAPPED_MS = 0.25
OVERHEAD_MS = 0.5
RUN_FACTORS = (1.0, 2.0, 0.5)  # run i takes its layer's time x RUN_FACTORS[i % 3]: median x1


class ProfiledTarget(OnnxRuntimeTarget, ProfilingTarget):
    name = "profiled"

    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        compiled = super().compile(model, config)
        layers = [(node_id(node), node.op_type) for node in model.graph]
        return dataclasses.replace(compiled, extra={**compiled.extra, "layers": layers})

    def profile(
        self,
        compiled: CompiledModel,
        batch_size: int,
        feeds: Mapping[str, np.ndarray],
        runs: int,
    ) -> TargetProfile:
        self.load(compiled, batch_size).run(feeds)
        factors = [RUN_FACTORS[run % len(RUN_FACTORS)] for run in range(runs)]
        layers = [
            LayerTiming(f"{op}_{ident}", op, (ident,), tuple(LAYER_MS[op] * f for f in factors))
            for ident, op in compiled.extra["layers"]
        ]
        layers.append(LayerTiming("memcpy", "Memcpy", (), tuple(UNMAPPED_MS * f for f in factors)))
        end_to_end = tuple(
            sum(layer.times_ms[run] for layer in layers) + OVERHEAD_MS for run in range(runs)
        )
        return TargetProfile("fake profiler", tuple(layers), end_to_end)
