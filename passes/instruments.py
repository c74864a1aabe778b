"""Instruments: before/after hooks around every pass of a pipeline (TVM's PassInstrument idea).

Verification, IR dumps, numeric checks and debug printing are instruments, not special cases in
passes. `after_pass` may return fields for the pass's audit record (e.g. `numeric`).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnx_ir as ir

from ir.drift import drift_record
from ir.errors import AsicperfError
from ir.files import write_text_atomically
from ir.listing import format_listing, summarize
from ir.reference import run_reference
from ir.verifier import verify
from passes.base import Pass, PassResult
from zoo.synthetic_inputs import seeded_inputs


class PassFailed(AsicperfError):
    """A pass broke the IR or the model; the message names the pass."""


class Instrument:
    """Hooks with no effect; subclasses override what they need."""

    def before_pipeline(self, model: ir.Model) -> None:
        """Called once, before the first pass."""

    def before_pass(self, seq: int, pass_: Pass, model: ir.Model) -> None:
        """Called before each pass runs (e.g. to say which one is running)."""

    def after_pass(
        self, seq: int, pass_: Pass, model: ir.Model, result: PassResult
    ) -> Mapping[str, Any]:
        """Called after each pass; returns extra fields for its audit record."""
        return {}


def _ir_text(model: ir.Model, title: str) -> str:
    return format_listing(summarize(model), title=title) + "\n"


class VerifyAfterEachPass(Instrument):
    """Stops the pipeline at the first pass that leaves an invalid IR."""

    def after_pass(self, seq, pass_, model, result):
        violations = verify(model)
        if violations:
            first = violations[0]
            more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
            raise PassFailed(
                f"pass '{pass_.name}' (#{seq}) broke the IR: {first.rule}: {first.message}{more}"
            )
        return {}


class DumpIR(Instrument):
    """Writes the IR listing before the pipeline (`000_input.txt`) and after each pass
    (`NNN_<pass>.txt`) into a folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def before_pipeline(self, model):
        write_text_atomically(self.folder / "000_input.txt", _ir_text(model, "input"))

    def after_pass(self, seq, pass_, model, result):
        name = f"{seq:03d}_{pass_.name}.txt"
        write_text_atomically(self.folder / name, _ir_text(model, f"after {pass_.name}"))
        return {}


class NumericCheck(Instrument):
    """Runs the model on a fixed seeded batch with the reference path after every pass that
    changed it, and records the drift against the previous pass and against the input model."""

    def __init__(self, seed: int = 0, bindings: Mapping[str, int] | None = None) -> None:
        self.seed = seed
        self.bindings = dict(bindings or {})
        self._feeds: dict[str, np.ndarray] = {}
        self._input_outputs: list[np.ndarray] = []
        self._previous: list[np.ndarray] = []

    def before_pipeline(self, model):
        self._feeds = seeded_inputs(model, self.seed, self.bindings)
        self._input_outputs = run_reference(model, self._feeds)
        self._previous = self._input_outputs

    def after_pass(self, seq, pass_, model, result):
        if not result.modified:
            return {"numeric": None}
        try:
            outputs = run_reference(model, self._feeds)
        except AsicperfError as error:
            raise PassFailed(f"pass '{pass_.name}' (#{seq}) left a model that {error}") from error
        numeric = {
            "seed": self.seed,
            "vs_previous": drift_record(self._previous, outputs),
            "vs_input": drift_record(self._input_outputs, outputs),
        }
        self._previous = outputs
        return {"numeric": numeric}


class DebugPrint(Instrument):
    """Graded debug output on a stream: 1 = a line per pass, 2 = also the IR diff,
    3 = also the whole IR after every pass."""

    def __init__(self, level: int, stream: TextIO | None = None) -> None:
        self.level = level
        self.stream = stream or sys.stderr
        self._previous_text = ""

    def before_pipeline(self, model):
        if self.level >= 2:
            self._previous_text = _ir_text(model, "input")

    def after_pass(self, seq, pass_, model, result):
        print(
            f"[{seq:03d}] {pass_.name}: modified={result.modified} "
            f"changes={len(result.changes)} skipped={len(result.skipped)}",
            file=self.stream,
        )
        if self.level >= 2:
            text = _ir_text(model, f"after {pass_.name}")
            if self.level >= 3:
                self.stream.write(text)
            else:
                self.stream.writelines(
                    difflib.unified_diff(
                        self._previous_text.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        "before",
                        f"after {pass_.name}",
                        n=1,
                    )
                )
            self._previous_text = text
        return {}
