"""A pipeline's steps: passes that run once, and groups of passes repeated to a fixed point.

`repeat(cse,dce){max=4}` runs cse then dce, round after round, until a round changes nothing
(the fixed point) or `max` rounds have run (the cap), as onnx-ir's PassManager does with
`steps` and `early_stop`: one pass's rewrite can expose work for a pass that ran before it
(dce deletes the last reader that kept two nodes apart, and cse can merge them next round).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from passes.base import Pass, PassConfig
from passes.option_range import bounded


@dataclass(frozen=True)
class RepeatConfig(PassConfig):
    """`max`: the most rounds the group runs; it stops sooner, at the first round in which no
    pass changed the model."""

    max: int = bounded(8, low=1)


@dataclass(frozen=True)
class Repeat:
    """Passes run as one round, again until a round changes nothing, at most `config.max`
    rounds. Groups do not nest: a round is a straight list of passes."""

    name: ClassVar[str] = "repeat"
    config_type: ClassVar[type[PassConfig]] = RepeatConfig

    passes: tuple[Pass, ...]
    config: RepeatConfig = RepeatConfig()

    @property
    def max_rounds(self) -> int:
        return self.config.max

    def text(self) -> str:
        """The group as pipeline text, its passes by name: `repeat(cse,dce){max=4}`."""
        return f"{self.name}({steps_text(self.passes)}){{max={self.max_rounds}}}"


Step = Pass | Repeat


def steps_text(steps: Sequence[Step]) -> str:
    """The pipeline as text naming its passes, for messages and the audit."""
    return ",".join(step.text() if isinstance(step, Repeat) else step.name for step in steps)


def most_pass_runs(steps: Sequence[Step]) -> int:
    """How many passes run at most: a group's passes once per round, up to its cap."""
    return sum(
        len(step.passes) * step.max_rounds if isinstance(step, Repeat) else 1 for step in steps
    )
