"""The `onnxruntime` target: ONNX Runtime's CPU execution provider (CUDA/TensorRT when the
installed build has them). Its op list comes from the kernels the build registers, so the
capability check is exactly what this onnxruntime can run."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from ir.errors import AsicperfError, first_line
from ir.fingerprint import fingerprint
from passes.audit import config_to_json
from passes.base import PassConfig
from passes.option_range import bounded
from targets.api import CompiledModel, Session, Target, TargetInfo, graph_io_names
from targets.compile_record import artifact_digest, compile_record, op_count_changes, op_counts
from targets.device import host_device
from targets.ort_kernels import OnnxRuntimeClaims

_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class OnnxRuntimeConfig(PassConfig):
    threads: int = bounded(0, low=0, note="0: onnxruntime's default, one per physical core")
    optimization: Literal["disable", "basic", "extended", "all"] = "all"
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"


class OnnxRuntimeTarget(OnnxRuntimeClaims, Target):
    name = "onnxruntime"
    config_type = OnnxRuntimeConfig

    def info(self) -> TargetInfo:
        providers = ort.get_available_providers()
        extra = [name for name, p in _PROVIDERS.items() if p in providers and name != "cpu"]
        device = host_device() + (f" (+ {', '.join(extra)})" if extra else "")
        return TargetInfo(
            self.name,
            ort.__version__,
            device,
            available=True,
            hardware="host",
            preferred_batch_sizes=(1, 8, 32),
        )

    def compile(self, model: ir.Model, config: PassConfig) -> CompiledModel:
        assert isinstance(config, OnnxRuntimeConfig)
        provider = _PROVIDERS[config.provider]
        if provider not in ort.get_available_providers():
            raise AsicperfError(
                f"target 'onnxruntime': provider '{config.provider}' is not in this build "
                f"(available: {', '.join(ort.get_available_providers())})"
            )
        data = ir.to_proto(model).SerializeToString()
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="asicperf-ort-") as folder:
            optimized = Path(folder) / "optimized.onnx"
            _session(data, config, optimized_path=optimized)
            wall_ms = (time.perf_counter() - start) * 1e3
            after = [
                node.op_type for node in onnx.load(optimized, load_external_data=False).graph.node
            ]
        before = [node.op_type for node in model.graph]
        inputs, outputs = graph_io_names(model)
        record = compile_record(
            target=self.name,
            config=config_to_json(config),
            ir_fingerprint=fingerprint(model),
            artifact_fingerprint=artifact_digest(data),
            wall_ms=wall_ms,
            nodes=(len(before), len(after)),
            changes=op_count_changes(
                op_counts(before),
                op_counts(after),
                rule=f"ort-{config.optimization}",
                who=f"onnxruntime '{config.optimization}' graph optimizations",
            ),
            extra={"provider": provider, "precision": "as in the model"},
        )
        return CompiledModel(
            self.name, record.in_fingerprint, record.config, data, record, inputs, outputs
        )

    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        config = OnnxRuntimeConfig(**compiled.options)
        return OnnxRuntimeSession(_session(compiled.payload, config), self.name)


def _session(
    data: bytes, config: OnnxRuntimeConfig, optimized_path: Path | None = None
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = _LEVELS[config.optimization]
    options.log_severity_level = 3
    if config.threads > 0:
        options.intra_op_num_threads = config.threads
    if optimized_path is not None:
        options.optimized_model_filepath = os.fspath(optimized_path)
    try:
        return ort.InferenceSession(data, options, providers=[_PROVIDERS[config.provider]])
    except Exception as error:  # onnxruntime's own exception types
        raise AsicperfError(
            f"target 'onnxruntime' cannot load the model: {first_line(error)}"
        ) from error


class OnnxRuntimeSession(Session):
    """An onnxruntime session; its run errors name the target that owns it."""

    def __init__(self, session: ort.InferenceSession, target: str) -> None:
        self._session = session
        self._target = target

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._session.run(None, dict(feeds))
        except Exception as error:  # onnxruntime's own exception types
            raise AsicperfError(
                f"target '{self._target}' failed to run: {first_line(error)}"
            ) from error
