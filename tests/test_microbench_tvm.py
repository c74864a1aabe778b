"""The tvm op provider: every op and dtype it runs agrees with the op's reference, twice over the
same inputs; the cases TVM gets wrong are refused with a reason; without TVM every case is."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from microbench_cases import every_case

from ir.errors import AsicperfError
from microbench.ops import BenchCase, parse_case
from microbench.providers.tvm_provider import TvmProvider
from targets.tvm_target import TvmTarget

pytest.importorskip("tvm", reason="apache-tvm is not installed")

SMALL = {
    "gemm": "5x3x33",
    "batch_gemm": "2x3x4x17",
    "gemv": "3x40",
    "conv2d": "2x3x7x6,4x3x3,2",
    "rxc": "4x37",
}
CASES = every_case(SMALL)
UNSUPPORTED = {
    "gemm/bf16": "bf16 accumulator",
    "gemm/int8": "no schedule rule takes an int8 MatMulInteger",
    "memcpy/fp32": "removes the Identity",
}
PROVIDER = TvmProvider()


def _op_dtype(case: BenchCase) -> str:
    return f"{case.op}/{case.dtype}"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test compiles into its own cache, never the user's."""
    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("case", [c for c in CASES if _op_dtype(c) not in UNSUPPORTED], ids=str)
def test_matches_reference_on_every_run(case: BenchCase) -> None:
    assert PROVIDER.unsupported_reason(case) is None
    inputs = case.inputs(seed=3)
    kernel = PROVIDER.prepare(case, inputs)
    kernel.run()
    first = kernel.result()
    kernel.run()
    actual, expected = kernel.result(), case.reference(inputs)
    np.testing.assert_array_equal(actual, first)
    assert case.mismatch(actual, expected) is None


@pytest.mark.parametrize("case", [c for c in CASES if _op_dtype(c) in UNSUPPORTED], ids=str)
def test_cases_tvm_gets_wrong_are_refused_with_a_reason(case: BenchCase) -> None:
    reason = PROVIDER.unsupported_reason(case)
    assert reason is not None and UNSUPPORTED[_op_dtype(case)] in reason
    with pytest.raises(AsicperfError, match=f"tvm cannot run {case}"):
        PROVIDER.prepare(case, case.inputs())


def test_without_tvm_every_case_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tvm", None)  # `import tvm` now raises ImportError
    provider = TvmProvider()
    reasons = {provider.unsupported_reason(case) for case in CASES}
    assert len(reasons) == 1 and reasons.pop().startswith("cannot import tvm")


def test_compile_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("no converter\nTraceback follows")

    monkeypatch.setattr(TvmTarget, "compile", broken)
    case = parse_case("add", "fp32", "2x3")
    with pytest.raises(AsicperfError) as caught:
        PROVIDER.prepare(case, case.inputs())
    assert str(caught.value) == "tvm cannot compile add/fp32/2x3: no converter"
