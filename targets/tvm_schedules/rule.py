"""The contract between the TVM target and a schedule rule."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from targets.tvm_schedules.host_tuning import CpuTuning


@dataclass(frozen=True)
class Scheduled:
    """The rule took the function: its schedule and a one-line summary of the choices made
    (tile sizes, vector width, what was fused), which goes into the compile record."""

    schedule: Any  # tvm.s_tir.Schedule
    detail: str


@dataclass(frozen=True)
class Declined:
    """The rule does not apply; `reason` says what it looked for and did not find."""

    reason: str


class ScheduleRule(ABC):
    """One family of loop nests (matmul, conv2d, elementwise...) and how to make it fast: a
    rule implements `schedule` (or `BlockRule.schedule_nest`), the target calls `apply`."""

    name: str

    def apply(self, func: Any, tuning: CpuTuning) -> Scheduled | Declined:
        """Schedule `func` (a tvm.tirx.PrimFunc) or say why not, without modifying it: the rule
        works on a `tvm.s_tir.Schedule` of it. A schedule primitive that refuses the function
        (a shape of loop nest the rule's analysis did not foresee) declines it with TVM's
        reason rather than failing the compile."""
        import tvm
        from tvm import s_tir

        if not isinstance(func, tvm.tirx.PrimFunc):
            return Declined("not a PrimFunc")
        try:
            return self.schedule(s_tir.Schedule(func), tuning)
        except s_tir.ScheduleError as error:
            return _primitive_failed(error)

    @abstractmethod
    def schedule(self, sch: Any, tuning: CpuTuning) -> Scheduled | Declined:
        """Schedule the function `sch` (a tvm.s_tir.Schedule, fresh from the PrimFunc) holds and
        return it with the choices made, or say why the rule does not apply. Schedule
        primitives may raise `tvm.s_tir.ScheduleError`: `apply` turns that into a decline."""


class BlockRule(ScheduleRule):
    """A rule that works from DLight's description of the function's blocks; it declines a
    function that is not a loop nest DLight can analyse."""

    def schedule(self, sch: Any, tuning: CpuTuning) -> Scheduled | Declined:
        from tvm.s_tir.dlight.analysis import normalize_prim_func

        infos = normalize_prim_func(sch)
        if infos is None:
            return Declined("not a nest of loops over blocks that the schedule can analyse")
        return self.schedule_nest(sch, infos, tuning)

    @abstractmethod
    def schedule_nest(self, sch: Any, infos: list[Any], tuning: CpuTuning) -> Scheduled | Declined:
        """`schedule`, given `infos` (one `tvm.s_tir.dlight.analysis.SBlockInfo` per block, in
        order: its name, iterator kinds and loops)."""


def _primitive_failed(error: Exception) -> Declined:
    """TVM's reason: the `Error message:` line of a ScheduleError, else its first line."""
    lines = str(error).splitlines()
    reason = next((line for line in lines if line.startswith("Error message:")), lines[0])
    return Declined(f"schedule primitive failed: {reason}")
