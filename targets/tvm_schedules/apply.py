"""Picks a rule per PrimFunc and says which one scheduled it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ir.errors import first_line
from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import Declined, Scheduled, ScheduleRule

DEFAULT = "default"  # the record's rule name for a function every rule declined


@dataclass(frozen=True)
class FunctionSchedule:
    """One PrimFunc's outcome: the rule that scheduled it and its choices, or `default` and each
    rule's reason for declining."""

    function: str
    rule: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"function": self.function, "rule": self.rule, "detail": self.detail}


def schedule_function(
    func: Any, rules: Sequence[ScheduleRule], tuning: CpuTuning
) -> tuple[Any, str, str]:
    """(the scheduled or unchanged function, the rule's name, its detail or the reasons). A rule
    that raises declines: the function keeps TVM's default loops and the record says why, rather
    than a rule's blind spot failing the user's compile."""
    reasons = []
    for rule in rules:
        try:
            outcome = rule.apply(func, tuning)
        except Exception as error:  # a loop nest the rule's analysis did not foresee
            outcome = Declined(f"the rule failed ({type(error).__name__}: {first_line(error)})")
        if isinstance(outcome, Scheduled):
            return outcome.schedule.mod["main"], rule.name, outcome.detail
        assert isinstance(outcome, Declined)
        reasons.append(f"{rule.name}: {outcome.reason}")
    return func, DEFAULT, "; ".join(reasons) or "no rules"


def apply_rules(
    module: Any, rules: Sequence[ScheduleRule], tuning: CpuTuning
) -> tuple[Any, list[FunctionSchedule]]:
    """Every PrimFunc of an IRModule through the rules; the module is copied, not changed."""
    import tvm

    updated = tvm.IRModule(dict(module.functions), attrs=module.attrs)
    records = []
    for var, func in module.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", False):
            continue
        scheduled, rule, detail = schedule_function(func, rules, tuning)
        if rule != DEFAULT:
            scheduled = scheduled.with_attr("tirx.is_scheduled", True)
        updated[var] = scheduled
        records.append(FunctionSchedule(var.name_hint, rule, detail))
    return updated, sorted(records, key=lambda r: r.function)
