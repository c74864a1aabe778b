"""Running op cases: each implementation's output is checked against the op's numpy reference
before any timing counts, timed under the timing policy, checked again (a kernel that races
between threads can pass once), and placed under its device's roofline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import numpy as np

from ir.errors import first_line
from microbench.ops import BenchCase
from microbench.providers.base import Kernel, Provider
from microbench.roofline import Roofline, RooflinePoint
from microbench.timing import Timing, TimingPolicy, measure


@dataclass(frozen=True)
class CaseResult:
    """A case measured on one provider."""

    case: BenchCase
    provider: str
    device: str
    timing: Timing
    point: RooflinePoint
    prepare_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            **_identity(self.case, self.provider),
            "device": self.device,
            "flops": self.case.flops,
            "bytes": self.case.bytes,
            "intensity": self.point.intensity,
            "gflops": self.point.gflops,
            "gbps": self.point.gbps,
            "bound": self.point.bound,
            "peak_fraction": self.point.peak_fraction,
            "prepare_s": self.prepare_s,
            **self.timing.to_json(),
        }


@dataclass(frozen=True)
class CaseNotRun:
    """A case a provider does not support (`failed` False), or whose kernel raised or gave a
    wrong result (`failed` True): never timed."""

    case: BenchCase
    provider: str
    reason: str
    failed: bool

    def to_json(self) -> dict[str, Any]:
        return {**_identity(self.case, self.provider), "reason": self.reason}


CaseOutcome: TypeAlias = CaseResult | CaseNotRun


class CaseProgress(Protocol):
    """Progress per case: told before each (case, provider) starts and after it ends."""

    def started(self, case: BenchCase, provider: str) -> None: ...

    def finished(self, outcome: CaseOutcome) -> None: ...


def run_cases(
    plan: Sequence[tuple[BenchCase, Sequence[Provider]]],
    policy: TimingPolicy,
    roofline_of: Callable[[Provider], Roofline],
    progress: CaseProgress,
    seed: int = 0,
) -> Iterator[CaseOutcome]:
    """Each case on each of its providers; inputs and the reference are made once per case."""
    for case, providers in plan:
        reasons = [provider.unsupported_reason(case) for provider in providers]
        if None in reasons:
            inputs = case.inputs(seed)
            expected = case.reference(inputs)
        for provider, reason in zip(providers, reasons, strict=True):
            progress.started(case, provider.name)
            if reason is not None:
                outcome: CaseOutcome = CaseNotRun(case, provider.name, reason, failed=False)
            else:
                outcome = _run(case, provider, inputs, expected, policy, roofline_of(provider))
            progress.finished(outcome)
            yield outcome


def _run(
    case: BenchCase,
    provider: Provider,
    inputs: dict[str, np.ndarray],
    expected: np.ndarray,
    policy: TimingPolicy,
    roofline: Roofline,
) -> CaseOutcome:
    start = time.perf_counter()
    try:
        kernel = provider.prepare(case, inputs)
        prepare_s = time.perf_counter() - start
        wrong = _check(kernel, case, expected)
        if wrong is not None:
            return CaseNotRun(case, provider.name, wrong, failed=True)
        timing = measure(kernel.run, policy, device_timer=kernel.device_timer)
        wrong = _check(kernel, case, expected)
    except Exception as error:  # a provider's kernel may fail any way; the others go on
        return CaseNotRun(case, provider.name, f"raised: {first_line(error)}", failed=True)
    if wrong is not None:
        return CaseNotRun(case, provider.name, f"after timing: {wrong}", failed=True)
    point = roofline.place(case, timing.median)
    return CaseResult(case, provider.name, roofline.device, timing, point, prepare_s)


def _check(kernel: Kernel, case: BenchCase, expected: np.ndarray) -> str | None:
    kernel.run()
    return case.mismatch(kernel.result(), expected)


def _identity(case: BenchCase, provider: str) -> dict[str, Any]:
    return {
        "op": case.op,
        "provider": provider,
        "dtype": case.dtype,
        "shape": case.shape_text,
    }
