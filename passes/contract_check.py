"""The check of a pipeline against its passes' contracts, made before any pass runs.

Each requirement must be met by an earlier pass that provides it, with no pass in between that
invalidates it, or else by the input model itself (a model whose weights are initializers needs
no fold-constants). An unmet requirement refuses the pipeline in one line naming the pass, what
it needs and the pass that provides it. The manager never inserts that pass itself: the audit
lists exactly the pipeline that was asked for, and the fix is the user's to make, once.

A `repeat(...)` group is checked for two rounds: after the first, every property a pass of the
group provides or invalidates is settled, so later rounds start where the second does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import onnx_ir as oir

from passes.base import Pass
from passes.contracts import Property
from passes.pipeline import PipelineError
from passes.steps import Repeat, Step, steps_text

_ROUNDS_THAT_DECIDE = 2


def check_contracts(steps: Sequence[Step], model: oir.Model) -> None:
    """Raise PipelineError at the first requirement that `steps` leave unmet on `model`."""
    available: set[Property] = set()
    invalidated_by: dict[Property, str] = {}
    on_input: dict[Property, bool] = {}  # whether the input model has it, asked once each
    for pass_ in _in_run_order(steps):
        for needed in pass_.requires:
            if needed in available:
                continue
            if needed in invalidated_by:
                raise PipelineError(
                    f"pipeline '{steps_text(steps)}': pass '{pass_.name}' needs "
                    f"{needed.description}, which '{invalidated_by[needed]}' before it "
                    f"invalidates: run '{needed.provided_by}' between them"
                )
            if needed not in on_input:
                on_input[needed] = needed.holds(model)
            if not on_input[needed]:
                raise PipelineError(
                    f"pipeline '{steps_text(steps)}': pass '{pass_.name}' needs "
                    f"{needed.description}: run '{needed.provided_by}' before it"
                )
            available.add(needed)
        for lost in pass_.invalidates:
            available.discard(lost)
            invalidated_by[lost] = pass_.name
        for gained in pass_.provides:
            available.add(gained)
            invalidated_by.pop(gained, None)


def _in_run_order(steps: Sequence[Step]) -> Iterator[Pass]:
    for step in steps:
        if isinstance(step, Repeat):
            for _ in range(min(step.max_rounds, _ROUNDS_THAT_DECIDE)):
                yield from step.passes
        else:
            yield step
