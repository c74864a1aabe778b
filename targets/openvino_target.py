"""The `openvino` target: Intel's OpenVINO runtime (CPU here; GPU and NPU where its plugins find
one), registered through the `asicperf.targets` entry point exactly as a vendor's plugin is.

OpenVINO is the kind of stack the toolkit exists to judge: a compiler that makes choices the
user never sees. On a CPU with AVX512-BF16 it computes a float32 model in bfloat16 unless told
otherwise, fuses BatchNorm and activations into its convolutions, and picks streams and threads
from a hint. The compile record makes each choice visible: the effective precision (and who
chose it, `targets.precision_choice`), the devices, streams and threads, and the layers its
runtime model executes with their types, kernels and runtime precisions, mapped back to the
IR's node ids.

What OpenVINO cannot run is asked of OpenVINO itself: its ONNX frontend converts what it can
(`convert_partially`) and `Core.query_model` says which of the converted ops the device runs;
the other nodes fall back to the reference path through the partitioner.

This module is what the registry imports for `runner targets list`: options and claims, loaded
without openvino; reading, querying, compiling and sessions are in `targets.openvino_runtime`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from ir.capabilities import FusedOp
from passes.base import PassConfig
from passes.option_range import bounded
from targets.api import Capabilities, CompiledModel, Session, Target, TargetInfo
from targets.installed import host_runtime_info
from targets.profiling import ProfilingTarget, TargetProfile

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np
    import onnx_ir as oir

DISTRIBUTIONS = ("openvino",)
# OpenVINO's device names: a plugin, optionally with an index (CPU, GPU, GPU.1, NPU).
_DEVICE_NAME = re.compile(r"[A-Z]+(\.\d+)?")
# The tensor types OpenVINO's CPU plugin takes and returns through numpy (each checked by a
# Neg or Identity round trip; ONNX's node tests in docs/conformance.md cover the rest). Not
# float64: the plugin converts it to float32 at the boundary and computes it in float32.
DTYPES = frozenset(
    {"float32", "float16", "int8", "int16", "int32", "int64"}
    | {"uint8", "uint16", "uint32", "uint64", "bool"}
)
_MICROSOFT = "com.microsoft"
# What the decoder passes (the `llm` pipelines) may emit for OpenVINO 2026.4's CPU plugin: each
# op in the form its pass writes, alone on a tiny float32 graph at batch 2 with a left-padded
# row, compiled and then loaded from OpenVINO's blob cache, against onnxruntime 1.32
# (tests/test_target_openvino_llm.py). The RMSNorms (the default domain's contrib op, ONNX's
# from opset 23, the skip form with its sum) match to 1e-5; MultiHeadAttention with a
# past/present cache and the mask as attention bias, prefill and decode, to 1e-5 (and
# fuse-attention's form in an encoder); MatMulNBits at 4 and 8 bits to 1e-4 of onnxruntime at
# the pass's `accuracy_level=4`, as OpenVINO too quantizes the activations to int8 per block
# of 32 (where K is a multiple of 32, as in SmolLM2; otherwise it keeps them in float).
# Not declared, so the arithmetic stays for OpenVINO's own fusions (its RoPE and attention):
# - RotaryEmbedding: right when compiled, wrong once loaded from the blob cache (values up to
#   1e31 on heads, off by 1e-2 on [batch, seq, hidden]; SmolLM2's perplexity became NaN);
# - GroupQueryAttention: converted, claimed and right at batch 1, left padding included, but
#   any larger batch fails to run ("the shape of input data (2) conflicts with the reshape
#   pattern (1)").
FUSED_OPS = (
    FusedOp("SimplifiedLayerNormalization"),
    FusedOp("RMSNormalization", opsets=(23, None)),
    FusedOp("SkipSimplifiedLayerNormalization", _MICROSOFT),
    FusedOp("MultiHeadAttention", _MICROSOFT, variants=frozenset({"bias", "kv-cache"})),
    FusedOp("MatMulNBits", _MICROSOFT, variants=frozenset({"bits=4", "bits=8"})),
)


@dataclass(frozen=True)
class OpenVinoConfig(PassConfig):
    """`precision=default` leaves the inference precision to OpenVINO (bf16 on a CPU with
    AVX512-BF16 or AMX, which the compile record then flags); `threads` and `streams` at 0
    leave them to the performance hint."""

    device: str = "CPU"
    hint: Literal["latency", "throughput"] = "latency"
    precision: Literal["default", "f32", "bf16", "f16"] = "default"
    threads: int = bounded(0, low=0, note="0: what the hint picks")
    streams: int = bounded(0, low=0, note="0: what the hint picks")
    cache: bool = True  # reuse compiled blobs from $ASICPERF_CACHE/openvino
    # OpenVINO's per-layer counters (PERF_COUNT): `runner profile` turns them on; they cost
    # time in every layer, so ordinary runs leave them off
    perf_count: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _DEVICE_NAME.fullmatch(self.device):
            raise ValueError(f"device='{self.device}' is not an OpenVINO device name (CPU, GPU.0)")


class OpenVinoTarget(ProfilingTarget, Target):
    name = "openvino"
    config_type = OpenVinoConfig

    def info(self) -> TargetInfo:
        """From the package metadata; the devices OpenVINO finds are checked when a model is
        compiled, since only loading its plugins (half a second) tells."""
        return host_runtime_info(
            self.name, "openvino", DISTRIBUTIONS, (1, 8, 32), "pip install 'asicperf[openvino]'"
        )

    def capabilities(self) -> Capabilities:
        """Every op ONNX defines, as far as the op list goes: what OpenVINO really runs is
        decided per node by asking OpenVINO (`unsupported_reason`)."""
        return Capabilities(ops=None, dtypes=DTYPES, fused_ops=FUSED_OPS)

    def unsupported_reason(self, node: oir.Node, capabilities: Capabilities) -> str | None:
        """The dtype check, then OpenVINO's own answer for the node's graph: a node its ONNX
        frontend cannot convert, or one the device's plugin does not run."""
        from targets.known_failures import known_failure
        from targets.openvino_known_failures import OPENVINO_KNOWN_FAILURES
        from targets.openvino_runtime import query_verdicts

        reason = super().unsupported_reason(node, capabilities)
        if reason is None:  # converted, but wrong against ONNX's node tests
            reason = known_failure(node, OPENVINO_KNOWN_FAILURES)
        if reason is not None or node.graph is None:
            return reason
        return query_verdicts(node.graph, _DEFAULT_DEVICE).reason(node)

    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        from targets.openvino_runtime import compile_openvino

        assert isinstance(config, OpenVinoConfig)
        return compile_openvino(self.name, model, config)

    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        """Any batch size the compiled shapes allow: a model whose batch is still symbolic
        compiles with a dynamic dimension."""
        from targets.openvino_runtime import load_session

        return load_session(self.name, compiled)

    def profile(
        self,
        compiled: CompiledModel,
        batch_size: int,
        feeds: Mapping[str, np.ndarray],
        runs: int,
    ) -> TargetProfile:
        """OpenVINO's performance counters (`targets.openvino_profile`), of a model compiled
        with them on (`profiling_config`)."""
        from targets.openvino_profile import profile_openvino

        return profile_openvino(self.name, compiled, feeds, runs)

    def profiling_config(self, config: PassConfig) -> PassConfig:
        assert isinstance(config, OpenVinoConfig)
        return replace(config, perf_count=True)


_DEFAULT_DEVICE = OpenVinoConfig.device
