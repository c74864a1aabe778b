"""The CPU rules in the order they are tried: the specific kernels (matmul, convolution) before
the general ones, so a matmul with an elementwise epilogue is never taken as elementwise."""

from __future__ import annotations

from targets.tvm_schedules.conv2d import Conv2dRule
from targets.tvm_schedules.elementwise import ElementwiseRule
from targets.tvm_schedules.matmul import MatmulRule
from targets.tvm_schedules.reduction import ReductionRule
from targets.tvm_schedules.row_ops import RowOpRule
from targets.tvm_schedules.rule import ScheduleRule
from targets.tvm_schedules.winograd_rule import WinogradRule


def cpu_rules() -> tuple[ScheduleRule, ...]:
    return (
        WinogradRule(),
        MatmulRule(),
        Conv2dRule(),
        RowOpRule(),
        ReductionRule(),
        ElementwiseRule(),
    )
