"""Roofline placement: the bound is whichever ceiling is lower at the case's intensity, the peak
fraction is against that ceiling, and each ceiling says where it comes from."""

from __future__ import annotations

import dataclasses

import pytest
from report_documents import op_case, op_document, read

from microbench.ops import parse_case
from microbench.roofline import Ceiling, Roofline, compute_dtype, host_roofline, spec_roofline
from runner.report.op_sections import roofline_section
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


def _profile(flags: tuple[str, ...], clock_ghz: float | None = 3.0) -> HostProfile:
    cpu = CpuInfo("Test CPU", 1, 2, 2, flags, 2.0, "model name", 16.0, "AuthenticAMD", 25, 17)
    measured = HostMeasurement(
        150.0, 2048, 40.0, 30.0, 512, 260, 2, "2.0", "now", 1.0, clock_ghz, "chain"
    )
    return HostProfile(cpu, measured, True, "cache.json")


def test_percent_of_peak_above_100_is_impossible_with_isa_ceilings() -> None:
    """The ceiling was one numpy GEMM, so onnxruntime reached 113 % of it: now the ceiling
    is the ISA's (2 Zen 4 cores x 3 GHz x 32 FLOP/cycle) and numpy's rate is achievable, so
    a kernel 13 % faster than numpy sits below 100 %."""
    roofline = host_roofline(_profile(("avx2", "fma", "avx512f")))
    assert roofline.compute["fp32"].value == pytest.approx(2 * 3.0 * 32)
    assert roofline.compute["fp32"].source.startswith("ISA: 2 cores x 3.00 GHz (measured)")
    assert "AMD Zen 4: 2 FMA pipes x 256 bit" in roofline.compute["fp32"].source
    assert roofline.achievable["fp32"] == Ceiling(
        150.0, "achievable: numpy FP32 GEMM 2048^3, 2 threads"
    )
    case = parse_case("gemm", "fp32", "2048x2048x2048")
    faster_than_numpy = roofline.place(case, case.flops / (150.0 * 1.13e9))
    assert faster_than_numpy.peak_fraction == pytest.approx(169.5 / 192.0)
    record = roofline.to_json()["achievable"]
    assert record["compute_gflops"]["fp32"]["value"] == 150.0
    assert record["bandwidth_gbs"]["value"] == 30.0


def test_host_memory_roof_is_the_fastest_stream_and_triad_is_achievable() -> None:
    roofline_profile = _profile(("avx2", "fma"))
    roofline = host_roofline(roofline_profile)
    assert roofline.bandwidth is not None and roofline.bandwidth.value == 40.0  # copy > triad
    with_read = HostProfile(
        roofline_profile.cpu,
        dataclasses.replace(roofline_profile.measurement, read_gbs=45.0),
        True,
        "c",
    )
    assert host_roofline(with_read).bandwidth == Ceiling(
        45.0,
        "measured: read, 512 MiB arrays (the fastest stream measured: host DRAM publishes no "
        "figure, so a kernel may exceed it slightly)",
    )
    assert roofline.bandwidth.source.startswith("measured: copy, 512 MiB arrays")
    assert roofline.achievable_bandwidth == Ceiling(
        30.0, "achievable: STREAM triad, 512 MiB arrays"
    )
    assert roofline.cache_bytes == 260 * 2**20  # the last-level cache
    assert roofline.device == "host: Test CPU (AMD Zen 3, 2 cores)"


def test_host_ceilings_use_the_reported_clock_when_it_is_higher() -> None:
    roofline = host_roofline(_profile(("avx2", "fma"), clock_ghz=1.5))
    assert roofline.compute["fp32"].value == pytest.approx(2 * 2.0 * 32)
    assert "2.00 GHz (model name, above the measured 1.50 GHz)" in roofline.compute["fp32"].source


def test_host_without_any_clock_has_no_ceilings() -> None:
    profile = _profile(("avx2", "fma"), clock_ghz=None)
    profile = HostProfile(
        CpuInfo("Test CPU", 1, 2, 2, ("avx2",), None, None, 16.0), profile.measurement, True, "c"
    )
    assert host_roofline(profile).compute == {}


def test_old_roofline_documents_without_achievable_still_render() -> None:
    """Results written before the achievable line existed have no "achievable" key."""
    old = {"device": "host: X", "compute_gflops": {"fp32": {"value": 100.0, "source": "m"}}}
    roofline = {**old, "bandwidth_gbs": {"value": 10.0, "source": "m"}}
    case = {**op_case("gemm", "numpy", flops=1024, nbytes=256, gflops=50.0), "device": "host: X"}
    html = roofline_section([read(op_document([case], rooflines={"host": roofline}))])
    assert "fp32: 100" in html and "roof-achievable" not in html


def test_roofline_chart_draws_the_achievable_line_dashed() -> None:
    roofline = host_roofline(_profile(("avx2", "fma", "avx512f")))
    case = op_case("gemm", "numpy", flops=4000, nbytes=100, gflops=150.0)  # intensity 40
    document = op_document(
        [{**case, "device": roofline.device}], rooflines={"host": roofline.to_json()}
    )
    html = roofline_section([read(document)])
    assert html.count('class="roof-achievable"') == 2  # the GEMM rate and the triad slope
    assert "fp32 achievable: 150" in html and "Dashed: achievable" in html


def test_a_database_product_uses_its_datasheet() -> None:
    spec = get("nvidia-h200")
    roofline = spec_roofline(spec)
    assert roofline.compute["fp32"].value == spec.peak("fp32") * 1e3
    assert roofline.compute["int8"].value == spec.peak("int8") * 1e3
    assert roofline.bandwidth is not None
    assert roofline.bandwidth.value == spec.memory_bandwidth_gbs
    assert roofline.compute["fp32"].source.startswith("datasheet: https://")
