"""The numba kernels against each op's float64 numpy reference, including ragged shapes that
exercise every blocking remainder."""

from __future__ import annotations

import numpy as np
import pytest

from microbench.ops import BenchCase
from microbench.providers.numba_provider import NumbaProvider

_PROVIDER = NumbaProvider()


def _check(case: BenchCase, rtol: float, atol: float) -> None:
    inputs = case.inputs(seed=1)
    kernel = _PROVIDER.prepare(case, inputs)
    kernel.run()
    np.testing.assert_allclose(kernel.result(), case.reference(inputs), rtol=rtol, atol=atol)


# M, N, K: none a multiple of the 8 x 32 micro-tile or the 256-deep k block; (300, 1100, 700)
# spans several 256-row, 512-column and k blocks, each ragged.
@pytest.mark.parametrize(
    "shape",
    [(1, 1, 1), (7, 33, 513), (37, 53, 29), (130, 600, 70), (9, 520, 300), (300, 1100, 700)],
)
def test_gemm_matches_reference(shape: tuple[int, int, int]) -> None:
    # fp32 accumulation over K terms of N(0,1) products: error grows like sqrt(K) * ulp.
    _check(BenchCase("gemm", "fp32", shape), rtol=1e-4, atol=1e-5 * np.sqrt(shape[2]))


@pytest.mark.parametrize("op", ["softmax", "layer_norm", "rms_norm", "gelu", "silu", "sigmoid"])
@pytest.mark.parametrize("shape", [(5, 37), (17, 300)])
def test_row_op_matches_reference(op: str, shape: tuple[int, int]) -> None:
    _check(BenchCase(op, "fp32", shape), rtol=1e-5, atol=1e-6)


def test_exp_based_ops_saturate_without_overflow() -> None:
    case = BenchCase("sigmoid", "fp32", (1, 4))
    x = {"x": np.array([[-200.0, -80.0, 80.0, 200.0]], np.float32)}
    kernel = _PROVIDER.prepare(case, x)
    np.testing.assert_allclose(kernel.result(), case.reference(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        (BenchCase("gemm", "bf16", (8, 8, 8)), "fp32 only"),
        (BenchCase("gemm", "int8", (8, 8, 8)), "fp32 only"),
        (BenchCase("conv2d", "fp32", (1, 3, 8, 8, 4, 3, 1)), "no conv2d kernel"),
        (BenchCase("add", "fp32", (4, 4)), "no add kernel"),
    ],
)
def test_unsupported_cases_give_reasons(case: BenchCase, needle: str) -> None:
    reason = _PROVIDER.unsupported_reason(case)
    assert reason is not None and needle in reason
    with pytest.raises(ValueError, match=needle):
        _PROVIDER.prepare(case, {})


def test_supported_case_has_no_reason() -> None:
    assert _PROVIDER.unsupported_reason(BenchCase("softmax", "fp32", (2, 3))) is None
