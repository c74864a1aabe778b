"""The Python examples in the docs run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from microbench.bench import CaseResult, run_cases
from microbench.ops import parse_case
from microbench.providers.base import Provider
from microbench.roofline import spec_roofline
from microbench.timing import TimingPolicy
from targets.hardware.database import get

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)


def test_the_timing_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    (block,) = _python_blocks("methodology.md")
    exec(compile(block, "methodology.md", "exec"), {})
    assert re.fullmatch(r"[\d.e+-]+ us (noisy|settled)\n", capsys.readouterr().out)


def test_the_vendor_provider_example_is_a_working_provider() -> None:
    (block,) = _python_blocks("op-benchmarks.md")
    namespace: dict[str, object] = {}
    exec(compile(block, "op-benchmarks.md", "exec"), namespace)
    provider = namespace["AcmeProvider"]()
    assert isinstance(provider, Provider)
    roofline = spec_roofline(get(provider.hardware))
    policy = TimingPolicy(warmup_s=0.0, min_samples=3, min_time_s=0.0, max_time_s=0.1)
    case = parse_case("gemm", "fp32", "64x32x16")
    (outcome,) = run_cases([(case, [provider])], policy, lambda p: roofline, _Quiet())
    assert isinstance(outcome, CaseResult) and outcome.device == "NVIDIA H200 SXM 141GB"
    assert provider.unsupported_reason(parse_case("softmax", "fp32", "2x2")) == "fp32 GEMM only"


class _Quiet:
    def started(self, case: object, provider: str) -> None:
        pass

    def finished(self, outcome: object) -> None:
        pass
