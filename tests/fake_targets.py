"""Test targets: a partial one (to exercise partitioning) and ones that crash or hang."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping

import numpy as np
import onnx_ir as oir

from passes.base import PassConfig
from targets.api import Capabilities, CompiledModel, Session, TargetInfo
from targets.onnxruntime_target import OnnxRuntimeTarget


class PartialTarget(OnnxRuntimeTarget):
    """onnxruntime underneath, but it claims only MatMul, Add and Relu on float32."""

    name = "partial"

    def capabilities(self) -> Capabilities:
        ops = {("", "MatMul"), ("", "Add"), ("", "Relu")}
        return Capabilities(frozenset(ops), frozenset({"float32"}))

    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        unsupported = [n.op_type for n in model.graph if n.op_type not in ("MatMul", "Add", "Relu")]
        assert not unsupported, f"the partitioner sent {unsupported} to the partial target"
        return super().compile(model, config)


class _Crashing(Session):
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        os.kill(os.getpid(), signal.SIGSEGV)
        return []


class _Hanging(Session):
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        time.sleep(600)
        return []


class CrashingTarget(OnnxRuntimeTarget):
    name = "crashing"

    def info(self) -> TargetInfo:
        return TargetInfo(self.name, "0", "nowhere", available=True)

    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        return _Crashing()


class HangingTarget(CrashingTarget):
    name = "hanging"

    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        return _Hanging()


PREFILL_S, DECODE_S = 0.030, 0.010  # PacedTarget's time per prompt call and per decode step


class _Paced(Session):
    def __init__(self, inner: Session) -> None:
        self.inner = inner

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        prompt = feeds["input_ids"].shape[1] > 1
        time.sleep(PREFILL_S if prompt else DECODE_S)
        return self.inner.run(feeds)


class PacedTarget(OnnxRuntimeTarget):
    """onnxruntime underneath, each call of a decoder made to take a known time first:
    PREFILL_S for a prompt (more than one token), DECODE_S for a decode step."""

    name = "paced"

    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        return _Paced(super().load(compiled, batch_size))
