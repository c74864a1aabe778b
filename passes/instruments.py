"""Instruments: before/after hooks around every pass of a pipeline (as compiler pass managers have).

Verification, IR dumps, numeric checks and debug printing are instruments, not special cases in
passes. `after_pass` may return fields for the pass's audit record (the numeric check's
`numeric`), and `skip_reason` may keep a pass from running (`DisablePasses`, to bisect).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnx_ir as oir

from ir.drift import drift_record
from ir.errors import AsicperfError
from ir.files import write_text_atomically
from ir.listing import counted, format_listing, summarize
from ir.logit_drift import TOKEN_INPUT_NAME
from ir.seeded_inputs import seeded_inputs
from ir.verifier import verify
from passes.audit import NUMERIC_FIELD, PassRecord, repeat_groups
from passes.base import Pass, PassResult
from passes.catalog import PASSES
from passes.checked_run import CheckedRun, ModelRunner, ReferenceRunner
from passes.pipeline import PipelineError
from passes.steps import Repeat, Step, steps_text


class PassFailed(AsicperfError):
    """A pass broke the IR or the model; the message names the pass."""


class Instrument:
    """Hooks with no effect; subclasses override what they need. Per pass the manager asks
    every instrument's `skip_reason`, then calls `before_pass`, runs the pass and calls
    `after_pass`; `before_pipeline` and `after_pipeline` frame the whole run."""

    def before_pipeline(self, model: oir.Model) -> None:
        """Called once, before the first pass."""

    def skip_reason(self, seq: int, pass_: Pass) -> str | None:
        """Why pass #`seq` must not run, or None to let it run. A skipped pass gets no other
        hook, and its audit record names this instrument and the reason."""
        return None

    def before_pass(self, seq: int, pass_: Pass, model: oir.Model) -> None:
        """Called before each pass runs (e.g. to say which one is running)."""

    def after_pass(
        self, seq: int, pass_: Pass, model: oir.Model, result: PassResult
    ) -> Mapping[str, Any]:
        """Called after each pass; returns fields for its audit record (`PassRecord.extra`)."""
        return {}

    def after_pipeline(self, model: oir.Model, records: Sequence[PassRecord]) -> None:
        """Called once, after the last pass, with every pass's record."""


class DisablePasses(Instrument):
    """Keeps the named passes from running wherever they occur (in every round of a repeat
    group), to find a bad pass by bisection; the audit lists each as skipped."""

    def __init__(self, names: Iterable[str], steps: Sequence[Step]) -> None:
        """Refuses, in one line, a name that is no pass or no pass of `steps`."""
        in_pipeline = {
            pass_.name
            for step in steps
            for pass_ in (step.passes if isinstance(step, Repeat) else (step,))
        }
        self.names = frozenset(names)
        for name in sorted(self.names):
            if name not in PASSES:
                known = ", ".join(sorted(PASSES))
                raise PipelineError(f"--disable-pass {name}: no such pass (passes: {known})")
            if name not in in_pipeline:
                raise PipelineError(
                    f"--disable-pass {name}: pipeline '{steps_text(steps)}' has no pass '{name}'"
                )

    def skip_reason(self, seq, pass_):
        return "disabled by --disable-pass" if pass_.name in self.names else None


def _ir_text(model: oir.Model, title: str) -> str:
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
    """Runs the model on a fixed seeded batch after every pass that changed it, and records the
    drift against the previous pass and against the input model (for a vocabulary output, also
    in KL divergence and same-top-1: `ir.drift.drift_record`).

    `runner` runs the model: the reference path, unless the caller hands in one that knows
    where else to run a model holding ops the reference path lacks (`passes.checked_run`). The
    record's `where` then says where the check ran, or that the pass was not checked and why;
    `vs_previous` is left out after a pass that was not checked. With `require_checked` (a
    drift bound was asked for, which an unchecked pass leaves unverified) a pass nothing could
    run is an error. `feeds` replaces the seeded batch with given inputs (real text for a
    decoder, whose `input_ids` then also give each vocabulary output's perplexity change).
    """

    def __init__(
        self,
        seed: int = 0,
        bindings: Mapping[str, int] | None = None,
        runner: ModelRunner | None = None,
        require_checked: bool = False,
        feeds: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.seed = seed
        self.given_feeds = dict(feeds) if feeds is not None else None
        self.bindings = dict(bindings or {})
        self.runner = runner or ReferenceRunner()
        self.require_checked = require_checked
        self._feeds: dict[str, np.ndarray] = {}
        self._input = CheckedRun(None)
        self._previous: list[np.ndarray] | None = None

    def before_pipeline(self, model):
        self._feeds = self.given_feeds or seeded_inputs(model, self.seed, self.bindings)
        self._input = self.runner.run(model, self._feeds)
        if self._input.outputs is None and self.require_checked:
            raise AsicperfError(
                "the input model cannot be run, so the drift bound cannot be verified: "
                f"{self._input.reason}"
            )
        self._previous = self._input.outputs

    def after_pass(self, seq, pass_, model, result):
        if not result.modified:
            return {NUMERIC_FIELD: None}
        if self._input.outputs is None:  # nothing to measure the drift against
            run = CheckedRun(None, reason=f"the input model cannot be run: {self._input.reason}")
        else:
            try:
                run = self.runner.run(model, self._feeds)
            except AsicperfError as error:
                message = f"pass '{pass_.name}' (#{seq}) left a model that {error}"
                raise PassFailed(message) from error
        if run.outputs is None and self.require_checked:
            raise AsicperfError(
                f"pass '{pass_.name}' (#{seq}) could not be checked numerically, so the drift "
                f"bound cannot be verified: {run.reason}"
            )
        self._previous, previous = run.outputs, self._previous
        if run.outputs is None:
            return {NUMERIC_FIELD: {"seed": self.seed, "where": run.where}}
        numeric: dict[str, Any] = {"seed": self.seed}
        names = [output.name for output in model.graph.outputs]  # names pick the vocabulary
        ids = self._feeds.get(TOKEN_INPUT_NAME) if self.given_feeds else None  # real tokens
        if previous is not None:
            numeric["vs_previous"] = drift_record(previous, run.outputs, names, ids)
        numeric["vs_input"] = drift_record(self._input.outputs, run.outputs, names, ids)
        if run.where is not None:
            numeric["where"] = run.where
        return {NUMERIC_FIELD: numeric}


class DebugPrint(Instrument):
    """Graded debug output on a stream: 1 = a line per pass and one for the whole run (passes
    skipped, how each repeat group ended), 2 = also the IR diff, 3 = also the whole IR after
    every pass."""

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

    def after_pipeline(self, model, records):
        ran = [record for record in records if record.skipped_by is None]
        changed = sum(record.modified for record in ran)
        print(
            f"[end] {counted(len(ran), 'pass run', 'pass runs')}, {changed} changed the model; "
            f"{len(records) - len(ran)} skipped by instruments",
            file=self.stream,
        )
        for repeat in repeat_groups(records):
            print(f"[end] {repeat.group}: {repeat.outcome()}", file=self.stream)
