"""Op providers: numpy and onnxruntime agree with each op's reference, refuse what they cannot run
with a reason, and are found by name, built-in or through an entry point."""

from __future__ import annotations

import numpy as np
import pytest
from microbench_cases import every_case

from ir.errors import AsicperfError
from microbench.ops import BenchCase, parse_case
from microbench.providers.base import Provider
from microbench.providers.numpy_provider import NumpyProvider
from microbench.providers.onnxruntime_provider import OnnxRuntimeProvider
from microbench.providers.registry import UnknownProviderError, discover, get_provider

SMALL = {
    "gemm": "5x3x7",
    "batch_gemm": "2x3x4x5",
    "gemv": "3x5",
    "conv2d": "2x2x7x6,3x3x3,2",
    "rxc": "4x6",
}
CASES = every_case(SMALL)
PROVIDERS = [NumpyProvider(), OnnxRuntimeProvider()]


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_provider_matches_reference(provider: Provider, case: BenchCase) -> None:
    if provider.unsupported_reason(case) is not None:
        pytest.skip(provider.unsupported_reason(case))
    inputs = case.inputs(seed=3)
    kernel = provider.prepare(case, inputs)
    kernel.run()
    kernel.run()  # a second run over the same buffers gives the same answer
    actual, expected = kernel.result(), case.reference(inputs)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if case.dtype == "int8":
        np.testing.assert_array_equal(actual, expected)
    else:
        tol = {"fp32": 1e-5, "fp16": 1e-3, "bf16": 1e-2}[case.dtype]
        np.testing.assert_allclose(
            actual.astype(np.float64), expected.astype(np.float64), rtol=tol, atol=tol
        )


def test_conv2d_with_stride_one_and_a_large_kernel() -> None:
    case = parse_case("conv2d", "fp32", "1x3x9x9,4x5x5,1")
    inputs = case.inputs(seed=1)
    kernel = NumpyProvider().prepare(case, inputs)
    kernel.run()
    np.testing.assert_allclose(kernel.result(), case.reference(inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_bf16_gemm_is_unsupported_with_a_reason(provider: Provider) -> None:
    case = parse_case("gemm", "bf16", "2x3x4")
    reason = provider.unsupported_reason(case)
    assert reason and "bf16" in reason
    with pytest.raises(AsicperfError, match="cannot run gemm/bf16/2x3x4"):
        provider.prepare(case, case.inputs())


def test_builtins_are_registered_through_entry_points() -> None:
    entries = discover()
    assert entries["numpy"].plugin_type is NumpyProvider
    assert entries["onnxruntime"].plugin_type is OnnxRuntimeProvider
    assert {"numba", "tvm"} <= set(entries)
    assert get_provider("onnxruntime").name == "onnxruntime"


def test_unknown_provider_is_a_one_line_error() -> None:
    with pytest.raises(UnknownProviderError) as caught:
        get_provider("x")
    assert str(caught.value) == "unknown provider 'x' (known: numba, numpy, onnxruntime, tvm)"
