"""TVM on the CPU running each case's single-op ONNX graph, compiled by the project's `tvm` target
(Relax, the project's CPU schedule rules, LLVM for this host's CPU, the target's build cache):
what the op costs once TVM has compiled it. Inputs become device tensors once, so `run` is only
the VM's call of the compiled `main` (which allocates its output, as it does inside a model).

TVM is reached only through `targets.tvm_target`, which imports it lazily: without TVM this
module still loads, and every case is unsupported with the reason the target gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import numpy as np

from ir.errors import AsicperfError, first_line
from microbench.ops import BenchCase
from microbench.providers.base import Kernel, Provider
from targets.tvm_target import TvmConfig, TvmTarget


class TvmProvider(Provider):
    """The `tvm` target's default CPU build: schedule rules on, no tuning."""

    name = "tvm"

    @cached_property
    def _unavailable(self) -> str | None:
        """Why the target cannot run here (TVM missing), asked once; a build without LLVM
        fails each compile with that reason."""
        info = TvmTarget().info()
        return None if info.available else info.why_not

    def unsupported_reason(self, case: BenchCase) -> str | None:
        if self._unavailable is not None:
            return self._unavailable
        if case.op in ("gemm", "batch_gemm", "gemv") and case.dtype == "int8":
            return (
                "no schedule rule takes an int8 MatMulInteger: TVM's plain loop nest computes "
                "it correctly at about 2 GOP/s, seconds per 2048^3 call"
            )
        if case.op in ("gemm", "batch_gemm", "gemv") and case.dtype == "bf16":
            return (
                "TVM's ONNX frontend gives a bf16 MatMul a bf16 accumulator, so the error grows "
                "with K far past one bf16 rounding"
            )
        if case.op == "memcpy":
            return (
                "the tvm target's lowering removes the Identity, so the compiled main returns "
                "its input without copying it"
            )
        return None

    def prepare(self, case: BenchCase, inputs: Mapping[str, np.ndarray]) -> Kernel:
        reason = self.unsupported_reason(case)
        if reason is not None:
            raise AsicperfError(f"tvm cannot run {case}: {reason}")
        target = TvmTarget()
        try:
            compiled = target.compile(case.ir_model(), TvmConfig())
        except Exception as error:  # frontend and lowering failures, reported on one line
            raise AsicperfError(f"tvm cannot compile {case}: {first_line(error)}") from error
        bound = target.load(compiled, batch_size=1).bind(inputs)
        return Kernel(bound.run, lambda: bound.outputs()[0])
