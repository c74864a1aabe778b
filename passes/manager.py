"""Runs a pipeline: each pass in turn, its promise checked, instruments around it, one audit
record per pass."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import onnx_ir as ir

from ir.fingerprint import fingerprint
from passes.audit import PassRecord, config_to_json
from passes.base import Pass
from passes.instruments import DebugPrint, Instrument, PassFailed

DEBUG_ENV = "ASICPERF_DEBUG"


@dataclass(frozen=True)
class PipelineResult:
    model: ir.Model
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
    model: ir.Model,
    passes: Sequence[Pass],
    instruments: Sequence[Instrument] = (),
    *,
    debug: int | None = None,
) -> PipelineResult:
    """Apply `passes` to `model` in place; raises PassFailed naming the pass that broke it."""
    level = debug_level(debug)
    instruments = [*instruments, *([DebugPrint(level)] if level > 0 else [])]
    for instrument in instruments:
        instrument.before_pipeline(model)
    records = []
    current = fingerprint(model)
    for seq, pass_ in enumerate(passes, start=1):
        nodes_before = _node_count(model)
        for instrument in instruments:
            instrument.before_pass(seq, pass_, model)
        start = time.perf_counter()
        result = pass_(model)
        wall_ms = (time.perf_counter() - start) * 1e3
        after = fingerprint(model)
        if (after != current) != result.modified:
            promise = (
                "changed the model without recording it"
                if result.modified is False
                else ("recorded changes but left the model unchanged")
            )
            raise PassFailed(f"pass '{pass_.name}' (#{seq}) {promise}")
        extra: dict[str, object] = {}
        for instrument in instruments:
            extra.update(instrument.after_pass(seq, pass_, model, result))
        numeric = extra.pop("numeric", None)
        records.append(
            PassRecord(
                seq=seq,
                pass_name=pass_.name,
                config=config_to_json(pass_.config),
                in_fingerprint=current,
                out_fingerprint=after,
                modified=result.modified,
                wall_ms=wall_ms,
                changes=result.changes,
                skipped=result.skipped,
                numeric=numeric,  # type: ignore[arg-type]
                node_count=(nodes_before, _node_count(model)),
                extra=extra,
            )
        )
        current = after
    return PipelineResult(model, tuple(records))


def _node_count(model: ir.Model) -> int:
    return sum(1 for _ in model.graph.all_nodes())
