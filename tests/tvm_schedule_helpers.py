"""Test helper for the TVM schedule rules: PrimFuncs made from a tiny ONNX graph the way the
tvm target makes them, a check that a scheduled function computes what the original does, and
the two outcomes a rule's test expects (scheduled and still exact, or declined with a reason)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import Declined, Scheduled, ScheduleRule

# The figures of this project's CI machine (AVX-512, 2 cores, 48 KiB L1d, 2 MiB L2): rules are
# tested against fixed figures, not whatever host runs the tests.
TUNING = CpuTuning(
    vector_bits=512, cores=2, l1_bytes=48 * 1024, l2_bytes=2 << 20, l3_bytes=32 << 20
)


def llvm_target() -> Any:
    import tvm

    return tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})


def fused_functions(onnx_text: str, winograd: bool = False) -> dict[str, Any]:
    """The legalized, fused PrimFuncs of a model written in ONNX's text format, by name
    (`winograd`: with the 3x3 stride-1 convolutions rewritten first)."""
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    from targets.tvm_schedules.pipeline import fused_module

    module = from_onnx(onnx.parser.parse_model(onnx_text), keep_params_in_input=False)
    fused = fused_module(module, llvm_target(), winograd)
    return {
        var.name_hint: func
        for var, func in fused.functions.items()
        if isinstance(func, tvm.tirx.PrimFunc)
    }


def only_function(onnx_text: str, prefix: str) -> Any:
    """The one fused PrimFunc whose name starts with `prefix`."""
    matches = [f for name, f in fused_functions(onnx_text).items() if name.startswith(prefix)]
    assert len(matches) == 1, f"{len(matches)} functions named {prefix}*"
    return matches[0]


def run_function(func: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Compile `func` for the CPU and call it; returns every argument afterwards (outputs are
    the last ones)."""
    import tvm

    from targets.tvm_schedules.profile import build_function

    device = tvm.cpu(0)
    tensors = [tvm.runtime.tensor(array, device) for array in arrays]
    build_function(func, llvm_target()).jit()["main"](*tensors)
    return [tensor.numpy() for tensor in tensors]


def assert_same_results(original: Any, scheduled: Any, rtol: float = 1e-5) -> None:
    """Both functions on the same seeded inputs give the same outputs."""
    import tvm

    from targets.tvm_schedules.profile import random_arguments

    arrays = [t.numpy() for t in random_arguments(original, tvm.cpu(0))]
    expected = run_function(original, [a.copy() for a in arrays])
    actual = run_function(scheduled, [a.copy() for a in arrays])
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, np.abs(want).max()))


def schedule_and_check(rule: ScheduleRule, func: Any, tuning: CpuTuning = TUNING) -> Scheduled:
    """`rule` schedules `func`, and the scheduled function computes what `func` does."""
    outcome = rule.apply(func, tuning)
    assert isinstance(outcome, Scheduled), outcome
    assert_same_results(func, outcome.schedule.mod["main"])
    return outcome


def assert_declines(rule: ScheduleRule, func: Any, reason: str) -> None:
    """`rule` declines `func`, saying `reason`."""
    outcome = rule.apply(func, TUNING)
    assert isinstance(outcome, Declined), outcome
    assert reason in outcome.reason, outcome.reason


def trace(outcome: Scheduled) -> str:
    """The schedule primitives the rule applied, as TVM prints them."""
    return str(outcome.schedule.trace)
