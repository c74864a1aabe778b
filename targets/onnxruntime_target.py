"""The `onnxruntime` target: ONNX Runtime's CPU execution provider (CUDA/TensorRT when the
installed build has them). Its op list comes from the kernels the build registers, so the
capability check is exactly what this onnxruntime can run; the fused and contrib ops that
fusion passes may emit for it are declared below, each seen to run and to match the unfused
result.

onnxruntime, onnx and numpy are imported by the methods that compile and run: the registry
imports this module for `runner targets list`, which must not wait for them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ir.errors import AsicperfError, first_line
from passes.audit import config_to_json
from passes.base import PassConfig
from passes.option_range import bounded
from targets.api import (
    Capabilities,
    CompiledModel,
    FusedOp,
    Session,
    Target,
    TargetInfo,
    graph_io_names,
)
from targets.compile_record import artifact_digest, compile_record, op_count_changes, op_counts
from targets.installed import host_runtime_info
from targets.profiling import ProfilingTarget, TargetProfile

if TYPE_CHECKING:
    import numpy as np
    import onnx_ir as oir
    import onnxruntime as ort

# The packages that install the `onnxruntime` module (CPU and CUDA builds).
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")
_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
# Members of onnxruntime's GraphOptimizationLevel.
_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}

_MICROSOFT = "com.microsoft"
# What fusion passes may emit for onnxruntime's CPU build (checked with 1.32, float32).
# FusedConv and FusedGemm apply these activations as epilogues (neither has Gelu; FusedGemm has
# no Clip or HardSwish); their float16 kernels depend on the build and the CPU, so they are not
# declared. Gelu (erf) and FastGelu (tanh) are contrib GELUs for models below opset 20, where
# ONNX has no Gelu; LayerNormalization also runs in the default domain below opset 17, where
# ONNX does not define it yet (onnxruntime's own fusions emit it there). MultiHeadAttention
# takes an additive attention bias ("bias").
FUSED_OPS = (
    FusedOp(
        "FusedConv",
        _MICROSOFT,
        epilogues=frozenset(
            {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish"}
        ),
        attributes="activation_params",
    ),
    FusedOp(
        "FusedGemm",
        _MICROSOFT,
        epilogues=frozenset(
            {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Elu", "Softplus"}
        ),
        attributes="alpha_beta",
    ),
    FusedOp("Gelu", _MICROSOFT),
    FusedOp("FastGelu", _MICROSOFT),
    FusedOp("LayerNormalization", opsets=(1, 16)),
    FusedOp(
        "MultiHeadAttention",
        _MICROSOFT,
        variants=frozenset({"bias", "kv-cache"}),
        dtypes=frozenset({"float32", "float16", "bfloat16"}),
    ),
    # The decoder LLM ops (onnxruntime-genai's models use them): RMSNorm as the default-domain
    # contrib SimplifiedLayerNormalization (ONNX's RMSNormalization from opset 23), with the
    # residual Add as SkipSimplifiedLayerNormalization; the rotate-half rotary embedding;
    # grouped-query attention over a past/present KV cache; and weight-only quantized MatMul
    # (4 or 8 bits, blocked along K).
    FusedOp("SimplifiedLayerNormalization"),
    FusedOp("RMSNormalization", opsets=(23, None)),
    FusedOp("SkipSimplifiedLayerNormalization", _MICROSOFT),
    FusedOp("RotaryEmbedding", _MICROSOFT),
    FusedOp("GroupQueryAttention", _MICROSOFT, variants=frozenset({"kv-cache"})),
    FusedOp("MatMulNBits", _MICROSOFT, variants=frozenset({"bits=4", "bits=8"})),
)


@dataclass(frozen=True)
class OnnxRuntimeConfig(PassConfig):
    threads: int = bounded(0, low=0, note="0: onnxruntime's default, one per physical core")
    optimization: Literal["disable", "basic", "extended", "all"] = "all"
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"


class OnnxRuntimeClaims:
    """Mixin for targets that run on onnxruntime's CPU kernels: claims exactly those (the
    kernel tables of `targets.ort_kernels`, read from onnxruntime when first asked)."""

    def capabilities(self) -> Capabilities:
        from targets.ort_kernels import onnxruntime_capabilities

        return onnxruntime_capabilities()

    def unsupported_reason(self, node: oir.Node, capabilities: Capabilities) -> str | None:
        from targets.ort_kernels import onnxruntime_gap

        return super().unsupported_reason(node, capabilities) or onnxruntime_gap(node)  # type: ignore[misc]


class OnnxRuntimeTarget(OnnxRuntimeClaims, ProfilingTarget, Target):
    name = "onnxruntime"
    config_type = OnnxRuntimeConfig

    def info(self) -> TargetInfo:
        """From the package metadata: which providers the build has is known only once
        onnxruntime is imported, so a provider this build lacks is reported by `compile`."""
        return host_runtime_info(self.name, "onnxruntime", DISTRIBUTIONS, (1, 8, 32))

    def capabilities(self) -> Capabilities:
        return replace(super().capabilities(), fused_ops=FUSED_OPS)

    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        import onnx
        import onnx_ir as oir
        import onnxruntime as ort

        from ir.fingerprint import fingerprint

        assert isinstance(config, OnnxRuntimeConfig)
        provider = _PROVIDERS[config.provider]
        if provider not in ort.get_available_providers():
            raise AsicperfError(
                f"target 'onnxruntime': provider '{config.provider}' is not in this build "
                f"(available: {', '.join(ort.get_available_providers())})"
            )
        data = oir.to_proto(model).SerializeToString()
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
        """From a file rather than the bytes: onnxruntime's Python session keeps the bytes it
        is given for its whole life, a second copy of the weights in every measured run's
        memory (about 540 MB for SmolLM2-135M)."""
        config = OnnxRuntimeConfig(**compiled.options)
        with tempfile.TemporaryDirectory(prefix="asicperf-ort-") as folder:
            path = Path(folder) / "model.onnx"
            path.write_bytes(compiled.payload)
            return OnnxRuntimeSession(_session(os.fspath(path), config), self.name)

    def profile(
        self,
        compiled: CompiledModel,
        batch_size: int,
        feeds: Mapping[str, np.ndarray],
        runs: int,
    ) -> TargetProfile:
        """onnxruntime's session profiler, its node names mapped to IR ids
        (`targets.ort_profile`); any batch size the model's shapes allow."""
        from targets.ort_profile import profile_onnxruntime

        config = OnnxRuntimeConfig(**compiled.options)

        def open_session(path: str, folder: Path) -> ort.InferenceSession:
            return _session(path, config, optimized_path=folder / "optimized.onnx", profile=folder)

        return profile_onnxruntime(compiled.payload, feeds, runs, open_session, self.name)


def _session(
    data: bytes | str,
    config: OnnxRuntimeConfig,
    optimized_path: Path | None = None,
    profile: Path | None = None,
) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, _LEVELS[config.optimization]
    )
    options.log_severity_level = 3
    if config.threads > 0:
        options.intra_op_num_threads = config.threads
    if optimized_path is not None:
        options.optimized_model_filepath = os.fspath(optimized_path)
    if profile is not None:  # the trace goes to `profile`/profile_<time>.json
        options.enable_profiling = True
        options.profile_file_prefix = os.fspath(profile / "profile")
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
