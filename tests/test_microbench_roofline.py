"""Roofline placement: the bound is whichever ceiling is lower at the case's intensity, the peak
fraction is against that ceiling, and each ceiling says where it comes from."""

from __future__ import annotations

import pytest

from microbench.ops import parse_case
from microbench.roofline import Ceiling, Roofline, compute_dtype, host_roofline, spec_roofline
from targets.hardware.database import get
from targets.hardware.host import CpuInfo, HostMeasurement, HostProfile

ROOF = Roofline(
    "test device",
    {"fp32": Ceiling(100.0, "given"), "int8": Ceiling(400.0, "given")},
    Ceiling(10.0, "given"),
    cache_bytes=1 << 20,
)


def test_a_large_gemm_is_compute_bound() -> None:
    case = parse_case("gemm", "fp32", "512x512x512")  # 2*512^3 FLOPs over 3 MiB: ~85 FLOP/B
    seconds = case.flops / 50e9  # ran at 50 GFLOP/s
    point = ROOF.place(case, seconds)
    assert point.bound == "compute"
    assert point.gflops == pytest.approx(50.0)
    assert point.peak_fraction == pytest.approx(0.5)
    assert point.intensity == pytest.approx(2 * 512**3 / (3 * 512 * 512 * 4))


def test_int8_gemm_is_judged_against_the_int8_ceiling() -> None:
    case = parse_case("gemm", "int8", "512x512x512")
    point = ROOF.place(case, case.flops / 200e9)
    assert compute_dtype(case) == "int8"
    assert point.bound == "compute" and point.peak_fraction == pytest.approx(0.5)


def test_an_activation_out_of_cache_is_memory_bound() -> None:
    case = parse_case("gelu", "fp32", "1024x1024")  # 8 MiB in and out: beyond the 1 MiB cache
    point = ROOF.place(case, case.bytes / 5e9)  # moved 5 GB/s of the 10 available
    assert point.bound == "memory"
    assert point.gbps == pytest.approx(5.0)
    assert point.peak_fraction == pytest.approx(0.5)


def test_a_copy_has_no_flops_and_is_judged_by_bandwidth() -> None:
    case = parse_case("memcpy", "fp32", "1024x1024")
    assert case.flops == 0
    point = ROOF.place(case, case.bytes / 2.5e9)
    assert point.bound == "memory" and point.peak_fraction == pytest.approx(0.25)


def test_a_memory_bound_case_inside_the_cache_gets_no_fraction() -> None:
    case = parse_case("add", "fp32", "64x64")  # 48 KiB: served by the cache, not by memory
    point = ROOF.place(case, case.bytes / 40e9)
    assert point.bound == "cache" and point.peak_fraction is None
    assert point.gbps == pytest.approx(40.0)


def test_no_ceiling_for_the_dtype_gives_no_fraction() -> None:
    case = parse_case("gemm", "bf16", "512x512x512")
    point = ROOF.place(case, 1.0)
    assert point.bound is None and point.peak_fraction is None


def _profile(flags: tuple[str, ...]) -> HostProfile:
    cpu = CpuInfo("Test CPU", 1, 2, 2, flags, 2.0, "model name", 16.0)
    measured = HostMeasurement(300.0, 2048, 40.0, 30.0, 512, 260, 2, "2.0", "now", 1.0)
    return HostProfile(cpu, measured, None, True, "cache.json")


def test_host_ceilings_are_measured_and_scaled_by_the_cpu_units() -> None:
    roofline = host_roofline(_profile(("avx512f", "avx512_vnni", "avx512_bf16")))
    assert roofline.compute["fp32"] == Ceiling(300.0, "measured: numpy FP32 GEMM 2048^3, 2 threads")
    assert roofline.compute["int8"].value == 1200.0
    assert "VNNI" in roofline.compute["int8"].source
    assert roofline.compute["bf16"].value == 600.0
    assert "fp16" not in roofline.compute
    assert roofline.bandwidth == Ceiling(30.0, "measured: STREAM triad, 512 MiB arrays")
    assert roofline.cache_bytes == 260 * 2**20  # the last-level cache


def test_amx_outranks_vnni_for_int8() -> None:
    roofline = host_roofline(_profile(("avx512_vnni", "amx_int8")))
    assert roofline.compute["int8"].value == 300.0 * 32


def test_a_database_product_uses_its_datasheet() -> None:
    spec = get("nvidia-h200")
    roofline = spec_roofline(spec)
    assert roofline.compute["fp32"].value == spec.peak("fp32") * 1e3
    assert roofline.compute["int8"].value == spec.peak("int8") * 1e3
    assert roofline.bandwidth is not None
    assert roofline.bandwidth.value == spec.memory_bandwidth_gbs
    assert roofline.compute["fp32"].source.startswith("datasheet: https://")
