"""The op benchmark loop: results are checked before and after timing, a wrong, raising or
unsupported kernel is recorded with its reason and never timed, and each result lands on its
provider's roofline."""

from __future__ import annotations

import pytest
from fake_providers import (
    DeviceProvider,
    DeviceTimedProvider,
    ExactProvider,
    FixedDeviceTimer,
    RacyProvider,
    RaisingProvider,
    WrongProvider,
)

from microbench.bench import CaseNotRun, CaseOutcome, CaseResult, run_cases
from microbench.ops import BenchCase, parse_case
from microbench.providers.base import Provider
from microbench.roofline import Ceiling, Roofline
from microbench.timing import TimingPolicy

POLICY = TimingPolicy(warmup_s=0.0, min_samples=3, min_time_s=0.0, max_time_s=0.05)
ROOF = Roofline("roof", {"fp32": Ceiling(100.0, "given")}, Ceiling(10.0, "given"))
ADD = parse_case("add", "fp32", "256x256")


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def started(self, case: BenchCase, provider: str) -> None:
        self.events.append(("started", provider))

    def finished(self, outcome: CaseOutcome) -> None:
        self.events.append(("finished", outcome.provider))


def _run(*providers: Provider, case: BenchCase = ADD) -> dict[str, CaseOutcome]:
    log = _Log()
    outcomes = list(run_cases([(case, list(providers))], POLICY, lambda p: ROOF, log))
    assert log.events == [(event, p.name) for p in providers for event in ("started", "finished")]
    return {outcome.provider: outcome for outcome in outcomes}


def test_a_correct_kernel_is_timed_and_placed() -> None:
    result = _run(ExactProvider())["exact"]
    assert isinstance(result, CaseResult)
    assert len(result.timing.samples) >= 3 and result.device == "roof"
    assert result.point.bound == "memory"
    assert result.point.gbps == pytest.approx(ADD.bytes / result.timing.median / 1e9)
    record = result.to_json()
    assert record["op"] == "add" and record["shape"] == "256x256" and record["provider"] == "exact"
    assert set(record["latency_us"]) == {"median", "mean", "p10", "p90", "iqr"}
    assert record["peak_fraction"] == pytest.approx(record["gbps"] / 10.0)


@pytest.mark.parametrize(
    ("provider", "reason"),
    [
        (WrongProvider(), "differs from the numpy reference: max error"),
        (RaisingProvider(), "raised: driver lost"),
        (RacyProvider(), "after timing: differs from the numpy reference"),
    ],
)
def test_a_broken_kernel_fails_with_its_reason(provider: Provider, reason: str) -> None:
    outcome = _run(provider, ExactProvider())
    failed = outcome[provider.name]
    assert isinstance(failed, CaseNotRun) and failed.failed
    assert failed.reason.startswith(reason) and "\n" not in failed.reason
    assert isinstance(outcome["exact"], CaseResult)  # the others go on


def test_an_unsupported_case_is_skipped_not_failed() -> None:
    outcome = _run(ExactProvider(), case=parse_case("softmax", "fp32", "4x4"))["exact"]
    assert isinstance(outcome, CaseNotRun) and not outcome.failed
    assert outcome.to_json() == {
        "op": "softmax",
        "provider": "exact",
        "dtype": "fp32",
        "shape": "4x4",
        "reason": "adds only",
    }


def test_each_provider_gets_its_own_devices_roofline() -> None:
    roofs = {"host": ROOF, "nvidia-h200": Roofline("H200", {}, Ceiling(4800.0, "sheet"))}
    plan = [(ADD, [ExactProvider(), DeviceProvider()])]
    outcomes = list(run_cases(plan, POLICY, lambda p: roofs[p.hardware], _Log()))
    assert [o.device for o in outcomes if isinstance(o, CaseResult)] == ["roof", "H200"]


def test_a_device_kernel_is_timed_by_its_device_timer() -> None:
    result = _run(DeviceTimedProvider())["device-timed"]
    assert isinstance(result, CaseResult)
    assert set(result.timing.samples) == {FixedDeviceTimer.SECONDS}
    assert result.point.gbps == pytest.approx(ADD.bytes / FixedDeviceTimer.SECONDS / 1e9)
