"""The hardware spec database: every shipped file is sane, lookups work, bad files fail on one
line naming the file and field, comparisons compute exact ratios, and the host is parsed and
measured once per CPU."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ir.errors import AsicperfError
from targets.hardware.compare import compare
from targets.hardware.database import SPECS_DIR, UnknownHardwareError, all_specs, get, load_specs
from targets.hardware.host import (
    CACHE_ENV,
    CpuInfo,
    HostMeasurement,
    default_cache_path,
    host_profile,
    measure_host,
    parse_cpuinfo,
)
from targets.hardware.spec import DTYPES, KINDS, PRICE_KINDS, SpecError, load_spec, parse_spec

SPEC_FILES = sorted(SPECS_DIR.glob("*.toml"))
REQUIRED = ("vendor", "product", "kind", "release_year", "memory_gb", "memory_type", "sources")
REQUIRED_PRODUCTS = (
    "nvidia-a100-pcie",
    "nvidia-a100-sxm4",
    "nvidia-h100-pcie",
    "nvidia-h100-sxm5",
    "nvidia-h200",
    "nvidia-l4",
    "nvidia-t4",
    "nvidia-a10",
    "amd-mi300x",
    "intel-gaudi2",
    "intel-gaudi3",
    "habana-goya-hl100",
    "google-tpu-v5e",
    "aws-inferentia",
    "aws-inferentia2",
    "aws-trainium",
    "graphcore-c600",
    "moffett-s30",
    "moffett-s4",
    "qualcomm-cloud-ai-100-standard",
)


def _looks_like_source(text: str) -> bool:
    return text.startswith("https://") or text.startswith("document: ")


# --- the shipped data -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.stem)
def test_spec_file_is_complete_and_sane(path: Path) -> None:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    for field in REQUIRED:
        assert field in raw, f"{path.name}: missing {field}"
    spec = load_spec(path)
    assert spec.kind in KINDS
    assert 2010 <= spec.release_year <= 2030
    assert spec.memory_gb > 0
    if spec.memory_bandwidth_gbs is not None:
        assert 10 <= spec.memory_bandwidth_gbs <= 20_000, "bandwidth must be in GB/s"
    if spec.tdp_w is not None:
        assert 10 <= spec.tdp_w <= 1500
    for table in (spec.peak_dense_tflops, spec.peak_sparse_tflops):
        assert set(table) <= set(DTYPES)
        assert all(value > 0 for value in table.values())
        present = [table[d] for d in ("int8", "bf16", "fp32") if d in table]
        assert present == sorted(present, reverse=True), "expected int8 >= bf16 >= fp32"
    for dtype, sparse in spec.peak_sparse_tflops.items():
        assert sparse >= spec.peak_dense_tflops.get(dtype, 0)
    assert spec.sources and all(_looks_like_source(source) for source in spec.sources)
    if spec.price is not None:
        assert spec.price.kind in PRICE_KINDS
        assert _looks_like_source(spec.price.source)
        assert spec.price.date[:4].isdigit() and "-" in spec.price.date
        assert spec.price.usd > 0


def test_database_holds_the_products_buyers_compare() -> None:
    specs = all_specs()
    slugs = {spec.slug for spec in specs}
    assert len(specs) >= 17
    assert set(REQUIRED_PRODUCTS) <= slugs
    assert {spec.kind for spec in specs} >= {"GPU", "ASIC", "IPU", "NPU"}
    assert any(spec.peak_sparse_tflops for spec in specs if spec.vendor == "Moffett AI")


def test_well_known_figures_are_recorded() -> None:
    h100 = get("nvidia-h100-sxm5")
    assert h100.peak("bf16") == 989.5 and h100.peak("bf16", sparse=True) == 1979
    assert h100.memory_bandwidth_gbs == 3350
    assert get("google-tpu-v5e").peak("bf16") == 197
    assert get("aws-inferentia2").peak("int8") == 380
    assert get("nvidia-t4").peak("bf16") is None  # Turing has no BF16: left out, never zero


# --- lookups ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["nvidia-a100-sxm4", "NVIDIA-A100-SXM4", "a100 sxm4 80gb", "NVIDIA A100 SXM4 80GB"],
)
def test_lookup_by_slug_or_name_ignores_case_and_separators(name: str) -> None:
    assert get(name).slug == "nvidia-a100-sxm4"


def test_unknown_name_is_one_line_with_close_matches() -> None:
    with pytest.raises(UnknownHardwareError) as caught:
        get("h100")
    message = str(caught.value)
    assert "\n" not in message
    assert "unknown hardware 'h100'" in message
    assert "nvidia-h100-pcie" in message and "nvidia-h100-sxm5" in message


def test_misspelled_name_suggests_the_entry() -> None:
    with pytest.raises(UnknownHardwareError, match="intel-gaudi3"):
        get("intel-guadi3")


# --- bad spec files ---------------------------------------------------------------------------

GOOD_SPEC = """\
vendor = "Acme"
product = "X1"
kind = "ASIC"
release_year = 2024
memory_gb = 32
memory_type = "HBM3"
memory_bandwidth_gbs = 1000
sources = ["https://example.com/x1.pdf"]

[peak_dense_tflops]
bf16 = 100

[peak_sparse_tflops]
bf16 = 200

[price]
usd = 2.5
kind = "cloud-hourly"
source = "https://example.com/pricing"
date = "2024-06"
"""


def _write(tmp_path: Path, text: str, name: str = "acme-x1.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_spec_parses(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD_SPEC))
    assert (spec.slug, spec.name, spec.peak("bf16"), spec.price.usd) == (
        "acme-x1",
        "Acme X1",
        100,
        2.5,
    )


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("memory_gb = 32\n", "", "memory_gb"),
        ("memory_gb = 32", 'memory_gb = "lots"', "memory_gb"),
        ('kind = "ASIC"', 'kind = "FPGA"', "kind"),
        ("release_year = 2024", "release_year = 2024.5", "release_year"),
        ("memory_bandwidth_gbs = 1000", "memory_bandwidth_gbs = 3.35", "memory_bandwidth_gbs"),
        ("memory_bandwidth_gbs = 1000", "memory_bandwidth_gbs = -5", "memory_bandwidth_gbs"),
        ("memory_bandwidth_gbs = 1000", "memory_bandwith_gbs = 1000", "memory_bandwith_gbs"),
        ("[peak_dense_tflops]\nbf16 = 100", "[peak_dense_tflops]\nfp4 = 100", "fp4"),
        ("[peak_dense_tflops]\nbf16 = 100", "[peak_dense_tflops]\nbf16 = 0", "bf16"),
        ("[peak_sparse_tflops]\nbf16 = 200", "[peak_sparse_tflops]\nbf16 = 50", "bf16"),
        ('sources = ["https://example.com/x1.pdf"]', "sources = []", "sources"),
        ('sources = ["https://example.com/x1.pdf"]', 'sources = ["my notes"]', "sources"),
        ("usd = 2.5", 'usd = "cheap"', "price.usd"),
        ('date = "2024-06"\n', "", "price.date"),
        ('date = "2024-06"', 'date = "June 2024"', "price.date"),
        ('source = "https://example.com/pricing"', 'source = "a friend"', "price.source"),
    ],
)
def test_bad_field_is_one_line_naming_file_and_field(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    assert old in GOOD_SPEC
    path = _write(tmp_path, GOOD_SPEC.replace(old, new))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert f"'{field}'" in message or f".{field}'" in message


def test_invalid_toml_and_bad_file_name_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(_write(tmp_path, "vendor = \n"))
    with pytest.raises(SpecError, match="lowercase slug"):
        load_spec(_write(tmp_path, GOOD_SPEC, name="Acme X1.toml"))


def test_two_files_for_one_product_are_rejected(tmp_path: Path) -> None:
    _write(tmp_path, GOOD_SPEC, "acme-x1.toml")
    _write(tmp_path, GOOD_SPEC, "acme-x1-again.toml")
    with pytest.raises(SpecError, match="described twice"):
        load_specs(tmp_path)


# --- comparisons ------------------------------------------------------------------------------


def _spec(slug: str, **fields: Any):
    data = {
        "vendor": "Acme",
        "product": slug,
        "kind": "ASIC",
        "release_year": 2024,
        "memory_gb": 40,
        "memory_type": "HBM3",
        "sources": ["https://example.com"],
    } | fields
    return parse_spec(data, slug=slug, origin=f"{slug}.toml")


def test_compare_ratios_per_watt_and_per_dollar_are_exact() -> None:
    hourly = {"usd": 2.0, "kind": "cloud-hourly", "source": "https://e.com", "date": "2024-06"}
    listed = {"usd": 10_000, "kind": "list", "source": "https://e.com", "date": "2024-06"}
    first = _spec(
        "a",
        memory_bandwidth_gbs=1000,
        tdp_w=200,
        peak_dense_tflops={"bf16": 100},
        price=hourly,
    )
    second = _spec(
        "b",
        memory_gb=80,
        memory_bandwidth_gbs=1500,
        tdp_w=500,
        peak_dense_tflops={"bf16": 250},
        peak_sparse_tflops={"bf16": 500},
        price=listed,
    )
    result = compare([first, second], "bf16")
    a, b = result.rows
    assert (result.dtype, result.unit, result.baseline, result.sparse) == (
        "bf16",
        "TFLOPS",
        "a",
        False,
    )
    assert (a.peak_ratio, a.bandwidth_ratio, a.memory_ratio) == (1.0, 1.0, 1.0)
    assert (b.peak_ratio, b.bandwidth_ratio, b.memory_ratio) == (2.5, 1.5, 2.0)
    assert (a.peak_per_watt, b.peak_per_watt) == (0.5, 0.5)
    assert (a.peak_per_usd_hour, a.peak_per_1000_usd) == (50.0, None)
    assert (b.peak_per_usd_hour, b.peak_per_1000_usd) == (None, 25.0)
    sparse = compare([first, second], "bf16", sparse=True)
    assert sparse.rows[0].peak is None and sparse.rows[0].peak_ratio is None
    assert sparse.rows[1].peak == 500 and sparse.rows[1].peak_ratio is None


def test_compare_leaves_unpublished_values_empty_and_counts_int8_in_tops() -> None:
    result = compare([_spec("a"), _spec("b", peak_dense_tflops={"int8": 10})], "int8")
    assert result.unit == "TOPS"
    a, b = result.rows
    assert a.peak is None and a.peak_per_watt is None and a.memory_bandwidth_gbs is None
    assert b.peak == 10 and b.peak_ratio is None
    assert json.loads(json.dumps(result.to_json()))["rows"][0]["peak"] is None


def test_compare_needs_two_products_and_a_known_dtype() -> None:
    with pytest.raises(AsicperfError, match="at least two"):
        compare([_spec("a")])
    with pytest.raises(AsicperfError, match="unknown dtype"):
        compare([_spec("a"), _spec("b")], "fp4")


# --- the host ---------------------------------------------------------------------------------

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
cpu MHz\t\t: 800.000
physical id\t: 0
core id\t\t: 0
cpu cores\t: 2
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni amx_tile amx_bf16

"""
MEMINFO = "MemTotal:       16777216 kB\nMemFree:         1000 kB\n"


def _cpuinfo(sockets: int, cores: int, threads_per_core: int) -> str:
    blocks = []
    processor = 0
    for socket in range(sockets):
        for core in range(cores):
            for _ in range(threads_per_core):
                block = CPUINFO.replace("processor\t: 0", f"processor\t: {processor}")
                block = block.replace("physical id\t: 0", f"physical id\t: {socket}")
                blocks.append(block.replace("core id\t\t: 0", f"core id\t\t: {core}"))
                processor += 1
    return "".join(blocks)


def test_cpuinfo_parser_counts_sockets_cores_threads_and_isa_flags() -> None:
    cpu = parse_cpuinfo(_cpuinfo(sockets=2, cores=2, threads_per_core=2), MEMINFO)
    assert cpu.model == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert (cpu.sockets, cpu.cores, cpu.threads) == (2, 4, 8)
    assert cpu.flags == ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16")
    assert (cpu.clock_ghz, cpu.clock_source) == (2.0, "model name")
    assert cpu.memory_gib == 16.0
    assert (cpu.vendor, cpu.family, cpu.model_number) == ("GenuineIntel", 6, 106)


def test_cpuinfo_parser_handles_arm_style_text_without_topology() -> None:
    text = "processor\t: 0\nFeatures\t: fp asimd\n\nprocessor\t: 1\nFeatures\t: fp asimd\n"
    cpu = parse_cpuinfo(text)
    assert (cpu.cores, cpu.threads, cpu.flags, cpu.clock_ghz) == (2, 2, (), None)
    assert (cpu.vendor, cpu.family, cpu.model_number) == (None, None, None)


def _fake_measurement(gflops: float = 123.0) -> HostMeasurement:
    return HostMeasurement(
        fp32_gemm_gflops=gflops,
        gemm_size=1024,
        copy_gbs=10.0,
        triad_gbs=9.0,
        array_mib=256,
        llc_mib=32,
        threads=4,
        numpy_version="0",
        measured_at="2024-01-01T00:00:00+00:00",
        seconds=0.0,
        clock_ghz=3.5,
        clock_method="test",
    )


def test_host_measurement_is_cached_per_cpu_model_and_core_count(tmp_path: Path) -> None:
    calls: list[CpuInfo] = []

    def measure(cpu: CpuInfo) -> HostMeasurement:
        calls.append(cpu)
        return _fake_measurement(100.0 + len(calls))

    cpu = parse_cpuinfo(_cpuinfo(1, 4, 1), MEMINFO)
    cache = tmp_path / "cache" / "host.json"
    first = host_profile(cpu=cpu, measure=measure, cache_path=cache)
    second = host_profile(cpu=cpu, measure=measure, cache_path=cache)
    assert len(calls) == 1
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.measurement == first.measurement
    assert (
        host_profile(cpu=cpu, measure=measure, cache_path=cache, refresh=True).from_cache is False
    )
    other = parse_cpuinfo(_cpuinfo(1, 8, 1), MEMINFO)
    host_profile(cpu=other, measure=measure, cache_path=cache)
    assert len(calls) == 3
    entries = json.loads(cache.read_text())["entries"]
    assert set(entries) == {cpu.cache_key(), other.cache_key()}
    assert [p.name for p in cache.parent.iterdir()] == ["host.json"]  # no temp file left


def test_corrupt_cache_is_measured_again(tmp_path: Path) -> None:
    cache = tmp_path / "host.json"
    cache.write_text("{not json")
    profile = host_profile(
        cpu=parse_cpuinfo(CPUINFO), measure=lambda cpu: _fake_measurement(), cache_path=cache
    )
    assert profile.from_cache is False
    assert json.loads(cache.read_text())["schema"] == "asicperf.host-cache/2"


def test_host_cache_from_an_older_version_is_measured_again(tmp_path: Path) -> None:
    """A version-1 cache has no clock, so its ceilings would fall back to the reported clock:
    a stale cache must be measured again, not trusted."""
    cpu = parse_cpuinfo(CPUINFO)
    old = _fake_measurement().to_json()
    del old["clock_ghz"], old["clock_method"]
    cache = tmp_path / "host.json"
    cache.write_text(
        json.dumps({"schema": "asicperf.host-cache/1", "entries": {cpu.cache_key(): old}})
    )
    profile = host_profile(cpu=cpu, measure=lambda cpu: _fake_measurement(), cache_path=cache)
    assert profile.from_cache is False and profile.measurement.clock_ghz == 3.5
    assert json.loads(cache.read_text())["entries"][cpu.cache_key()]["clock_ghz"] == 3.5


def test_unwritable_cache_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(AsicperfError, match="cannot write the host cache") as caught:
        host_profile(
            cpu=parse_cpuinfo(CPUINFO),
            measure=lambda cpu: _fake_measurement(),
            cache_path=blocker / "host.json",
        )
    assert "\n" not in str(caught.value)


def test_cache_location_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert default_cache_path() == tmp_path / "host.json"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_path() == Path.home() / ".cache" / "asicperf" / "host.json"


@pytest.mark.slow
def test_real_host_measurement_gives_positive_rates() -> None:
    measured = measure_host(parse_cpuinfo(Path("/proc/cpuinfo").read_text()))
    assert measured.fp32_gemm_gflops > 0
    assert measured.copy_gbs > 0 and measured.triad_gbs > 0
    assert measured.clock_ghz is not None and 0.5 < measured.clock_ghz < 7.0
    assert measured.read_gbs is not None and measured.read_gbs > 0
