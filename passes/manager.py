"""Runs a pipeline: its passes' contracts checked before anything runs, then each pass in turn
(a repeat group round after round, to its fixed point or its cap), its promise checked,
instruments around it, one audit record per pass run."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import onnx_ir as oir

from ir.fingerprint import fingerprint
from passes.audit import PassRecord, RepeatRound, SkippedBy, config_to_json
from passes.base import Pass
from passes.contract_check import check_contracts
from passes.instruments import DebugPrint, Instrument, PassFailed
from passes.steps import Repeat, Step

DEBUG_ENV = "ASICPERF_DEBUG"


@dataclass(frozen=True)
class PipelineResult:
    model: oir.Model
    records: tuple[PassRecord, ...]

    @property
    def fingerprint(self) -> str:
        return self.records[-1].out_fingerprint if self.records else fingerprint(self.model)


def debug_level(option: int | None = None) -> int:
    """The debug level: the option if given, else $ASICPERF_DEBUG, else 0."""
    if option is not None:
        return option
    text = os.environ.get(DEBUG_ENV, "0").strip()
    return int(text) if text.isdigit() else 0


def run_pipeline(
    model: oir.Model,
    steps: Sequence[Step],
    instruments: Sequence[Instrument] = (),
    *,
    debug: int | None = None,
) -> PipelineResult:
    """Apply `steps` to `model` in place. Raises PipelineError, before any pass or instrument
    runs, for a pass whose requirements the pipeline leaves unmet, and PassFailed naming the
    pass that broke the model."""
    check_contracts(steps, model)
    level = debug_level(debug)
    run = _Run(model, [*instruments, *([DebugPrint(level)] if level > 0 else [])])
    for instrument in run.instruments:
        instrument.before_pipeline(model)
    for step in steps:
        if isinstance(step, Repeat):
            run.repeat(step)
        else:
            run.one(step)
    for instrument in run.instruments:
        instrument.after_pipeline(model, run.records)
    return PipelineResult(model, tuple(run.records))


class _Run:
    """One pipeline run: the model, its instruments, the fingerprint the model is at, and the
    records so far (one per pass run; `seq` counts them)."""

    def __init__(self, model: oir.Model, instruments: Sequence[Instrument]) -> None:
        self.model = model
        self.instruments = instruments
        self.records: list[PassRecord] = []
        self.fingerprint = fingerprint(model)

    def one(self, pass_: Pass) -> PassRecord:
        """Run `pass_`, unless an instrument skips it; either way, record it."""
        seq = len(self.records) + 1
        for instrument in self.instruments:
            reason = instrument.skip_reason(seq, pass_)
            if reason is not None:
                skipped_by = SkippedBy(type(instrument).__name__, reason)
                record = self._not_run(seq, pass_, skipped_by)
                break
        else:
            record = self._run(seq, pass_)
        self.records.append(record)
        return record

    def repeat(self, group: Repeat) -> None:
        """Rounds of the group's passes until one changes nothing or the cap is reached; then
        every record of the group says its round, how many ran and how the group ended."""
        first = len(self.records)
        rounds: list[int] = []
        fixed_point = False
        for round_ in range(1, group.max_rounds + 1):
            changed = [self.one(pass_).modified for pass_ in group.passes]
            rounds += [round_] * len(changed)
            if not any(changed):
                fixed_point = True
                break
        for index, round_ in enumerate(rounds, start=first):
            place = RepeatRound(
                group=group.text(),
                first_seq=first + 1,
                round=round_,
                rounds=rounds[-1],
                max_rounds=group.max_rounds,
                fixed_point=fixed_point,
            )
            self.records[index] = dataclasses.replace(self.records[index], repeat=place)

    def _run(self, seq: int, pass_: Pass) -> PassRecord:
        model = self.model
        nodes_before = _node_count(model)
        for instrument in self.instruments:
            instrument.before_pass(seq, pass_, model)
        start = time.perf_counter()
        result = pass_(model)
        wall_ms = (time.perf_counter() - start) * 1e3
        after = fingerprint(model)
        if (after != self.fingerprint) != result.modified:
            promise = (
                "changed the model without recording it"
                if result.modified is False
                else ("recorded changes but left the model unchanged")
            )
            raise PassFailed(f"pass '{pass_.name}' (#{seq}) {promise}")
        extra: dict[str, object] = {}
        for instrument in self.instruments:
            extra.update(instrument.after_pass(seq, pass_, model, result))
        record = PassRecord(
            seq=seq,
            pass_name=pass_.name,
            config=config_to_json(pass_.config),
            in_fingerprint=self.fingerprint,
            out_fingerprint=after,
            modified=result.modified,
            wall_ms=wall_ms,
            changes=result.changes,
            skipped=result.skipped,
            node_count=(nodes_before, _node_count(model)),
            extra=extra,
        )
        self.fingerprint = after
        return record

    def _not_run(self, seq: int, pass_: Pass, skipped_by: SkippedBy) -> PassRecord:
        nodes = _node_count(self.model)
        return PassRecord(
            seq=seq,
            pass_name=pass_.name,
            config=config_to_json(pass_.config),
            in_fingerprint=self.fingerprint,
            out_fingerprint=self.fingerprint,
            modified=False,
            wall_ms=0.0,
            changes=(),
            skipped=(),
            node_count=(nodes, nodes),
            skipped_by=skipped_by,
        )


def _node_count(model: oir.Model) -> int:
    return sum(1 for _ in model.graph.all_nodes())
