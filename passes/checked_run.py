"""Where the numeric check runs a model, and what it says when it cannot run it.

A fusion pass may emit an op the bound target declares (`ir.capabilities.FusedOp`) that the
reference path has no kernel for, e.g. Gelu below opset 20. Failing the whole pipeline there
would make a vendor choose between its fusions and the numeric check. So the check goes through
a `ModelRunner`: the plain one runs the reference path only; the one the runner layer builds
(`targets.reference_fallback`) runs such a model on the bound target itself, or says why
nothing could run it. passes/ import no target (docs/architecture.md): the layer that knows the
targets hands the runner in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from ir.reference import run_reference


@dataclass(frozen=True)
class CheckedRun:
    """A model's outputs for the numeric check and where they came from.

    `outputs` is None when nothing could run the model. `ran_on` is "" for the reference path,
    else what ran it instead (e.g. `target 'example-numpy'`); `reason` says why the reference
    path did not (and, when nothing ran it, why the target did not either)."""

    outputs: list[np.ndarray] | None
    ran_on: str = ""
    reason: str = ""

    @property
    def where(self) -> str | None:
        """The audit's one line on where the check ran; None for the reference path, the
        check's default, which records say nothing about."""
        if self.outputs is None:
            return f"not checked: {self.reason}"
        if self.ran_on:
            return f"checked on {self.ran_on}: {self.reason}"
        return None


class ModelRunner(ABC):
    """Runs a model on seeded feeds for the numeric check (and the drift bound's fit)."""

    @abstractmethod
    def run(self, model: oir.Model, feeds: Mapping[str, np.ndarray]) -> CheckedRun:
        """The outputs, or a run with none and the reason nothing could run the model. An
        AsicperfError means the model is broken: whatever should run it fails on it."""


class ReferenceRunner(ModelRunner):
    """The reference path only: a model it cannot run is an error."""

    def run(self, model, feeds):
        return CheckedRun(run_reference(model, feeds))
