"""The precision a target really computed in, and who chose it.

A vendor runtime may run a float32 model in bfloat16 because that is its default on this CPU,
and say so nowhere but in a property of the compiled model: the figures then compare a bf16 run
with float32 ones. A target puts this record in its compile record (`extra["precision"]`), and
results and reports flag a run whose precision the target changed on its own, next to the drift
that it caused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

PRECISION_KEY = "precision"  # where a compile record's `extra` carries it

# Who decided the precision the run computed in.
ChosenBy = Literal["model", "user", "target"]


@dataclass(frozen=True)
class PrecisionChoice:
    """`model`: the floating-point type of the model's weights and activations as compiled;
    `requested`: what the target's options asked ("default" when they left it to the target);
    `effective`: what the target reports it computes in; `chosen_by`: "model" when the target
    ran the model's own type, "user" when an option set it, "target" when the target's own
    default changed it."""

    model: str
    requested: str
    effective: str
    chosen_by: ChosenBy

    @classmethod
    def decide(cls, *, model: str, requested: str, effective: str) -> PrecisionChoice:
        """Who chose `effective`: the user whenever an option asked for a precision (even one
        the target then ignored: `requested` shows the difference), else the model when the
        target kept its type, else the target."""
        if requested != "default":
            chosen_by: ChosenBy = "user"
        elif effective == model:
            chosen_by = "model"
        else:
            chosen_by = "target"
        return cls(model=model, requested=requested, effective=effective, chosen_by=chosen_by)

    @property
    def vendor_default(self) -> bool:
        """The target changed the precision without being asked."""
        return self.chosen_by == "target"

    @property
    def ignored_request(self) -> bool:
        """An option asked for one precision and the target computed in another."""
        return self.chosen_by == "user" and self.requested != self.effective

    @property
    def flag(self) -> str | None:
        """What a report prints beside the run's figures, or None when nothing needs saying."""
        if self.vendor_default:
            return f"vendor default: {self.effective}"
        if self.ignored_request:
            return f"asked {self.requested}, ran {self.effective}"
        return None

    @property
    def description(self) -> str:
        """The precision as a run's description shows it, with who chose it: "bfloat16
        (target default)", "float16 (asked)", "float32 (asked float16)", "float32 (as in the
        model)"."""
        if self.vendor_default:
            return f"{self.effective} (target default)"
        if self.ignored_request:
            return f"{self.effective} (asked {self.requested})"
        if self.chosen_by == "user":
            return f"{self.effective} (asked)"
        return f"{self.effective} (as in the model)"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PrecisionChoice:
        return cls(
            model=str(data["model"]),
            requested=str(data["requested"]),
            effective=str(data["effective"]),
            chosen_by=data["chosen_by"],
        )


def precision_of(record: Mapping[str, Any]) -> PrecisionChoice | None:
    """The precision in a compile record as JSON (`PassRecord.to_json()`, where `extra`'s keys
    sit at the top level), looking into the segments of a partitioned compile: the first
    segment the target compiled that carries one (the reference path's segments run the
    model's own type). None when the target recorded none, as targets that always run the
    model's type do."""
    own = record.get(PRECISION_KEY)
    if isinstance(own, Mapping):
        return PrecisionChoice.from_json(own)
    for segment in record.get("segments", ()):
        found = precision_of(segment)
        if found is not None:
            return found
    return None
