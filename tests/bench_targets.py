"""A bench test target: the reference path, plus a known delay per query, and call counters so
tests can see which batch sizes were compiled and loaded."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import onnx_ir as oir

from passes.base import PassConfig
from targets.api import CompiledModel, Session
from targets.reference_target import ReferenceTarget

DELAY_S = 0.005


class _Sleepy(Session):
    def __init__(self, inner: Session) -> None:
        self._inner = inner

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        time.sleep(DELAY_S)
        return self._inner.run(feeds)


class SleepyTarget(ReferenceTarget):
    """Every query takes at least DELAY_S, whatever its batch size."""

    name = "sleepy"
    compiled_batches: ClassVar[list[int]] = []  # the batch dim of every compiled model
    loaded_batches: ClassVar[list[int]] = []

    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        first = model.graph.inputs[0].shape
        SleepyTarget.compiled_batches.append(first[0] if first else 0)
        return super().compile(model, config)

    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        SleepyTarget.loaded_batches.append(batch_size)
        return _Sleepy(super().load(compiled, batch_size))
