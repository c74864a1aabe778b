"""`runner hw list | show | compare` end to end: tables, JSON keys, the host from its cache, and
one-line errors for unknown names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from targets.hardware.cpu_peaks import isa_peaks
from targets.hardware.host import CACHE_ENV, CACHE_SCHEMA, HostMeasurement, detect_cpu

SPEC_KEYS = {
    "slug",
    "vendor",
    "product",
    "kind",
    "release_year",
    "memory_gb",
    "memory_type",
    "memory_bandwidth_gbs",
    "peak_dense_tflops",
    "peak_sparse_tflops",
    "tdp_w",
    "interconnect",
    "form_factor",
    "price",
    "sources",
    "notes",
}
ROW_KEYS = {
    "slug",
    "name",
    "peak",
    "peak_ratio",
    "memory_gb",
    "memory_ratio",
    "memory_bandwidth_gbs",
    "bandwidth_ratio",
    "tdp_w",
    "peak_per_watt",
    "price_usd",
    "price_kind",
    "peak_per_usd_hour",
    "peak_per_1000_usd",
}


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    assert main(["hw", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_prints_every_product(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "list"]) == 0
    text = capsys.readouterr().out
    for slug in ("nvidia-h100-sxm5", "google-tpu-v5e", "moffett-s30", "graphcore-c600"):
        assert slug in text
    specs = _json(capsys, "list")
    assert len(specs) >= 17
    assert all(set(spec) == SPEC_KEYS for spec in specs)


def test_show_prints_the_spec_sheet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "show", "NVIDIA L4"]) == 0
    text = capsys.readouterr().out
    assert "nvidia-l4" in text and "300 GB/s" in text and "https://" in text
    spec = _json(capsys, "show", "nvidia-l4")
    assert set(spec) == SPEC_KEYS
    assert spec["peak_dense_tflops"]["fp8"] == 242.5
    assert set(spec["price"]) == {"usd", "kind", "source", "date", "note"}


def test_show_host_reads_the_cached_measurement(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    measured = {
        "fp32_gemm_gflops": 321.0,
        "gemm_size": 2048,
        "copy_gbs": 12.5,
        "triad_gbs": 11.0,
        "array_mib": 256,
        "llc_mib": 32,
        "threads": 2,
        "numpy_version": "0",
        "measured_at": "2024-01-01T00:00:00+00:00",
        "seconds": 1.0,
        "clock_ghz": 9.0,
        "clock_method": "known",
        "read_gbs": 13.0,
    }
    cache = {"schema": CACHE_SCHEMA, "entries": {detect_cpu().cache_key(): measured}}
    (tmp_path / "host.json").write_text(json.dumps(cache))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    profile = _json(capsys, "show", "host")
    assert set(profile) == {
        "cpu",
        "core",
        "clock",
        "ceilings",
        "measured",
        "from_cache",
        "cache_path",
    }
    assert profile["from_cache"] is True
    assert profile["measured"] == measured
    assert profile["clock"] == {"ghz": 9.0, "source": "measured"}
    assert profile["ceilings"]["fp32"]["source"].startswith("ISA: ")
    assert {"model", "cores", "threads", "flags", "memory_gib", "vendor"} <= set(profile["cpu"])
    assert main(["hw", "show", "host"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "321.0 GFLOP/s measured" in text and "cached" in text
    assert "achievable FP32" in text and "ceiling fp32" in text and "9.00 GHz" in text


def test_hw_compare_accepts_host(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`hw compare nvidia-t4 nvidia-l4 host` was refused although `hw show host` works."""
    measured = HostMeasurement(321.0, 2048, 12.5, 11.0, 256, 32, 2, "0", "now", 1.0, 9.0, "k")
    cache = {"schema": CACHE_SCHEMA, "entries": {detect_cpu().cache_key(): measured.to_json()}}
    (tmp_path / "host.json").write_text(json.dumps(cache))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    result = _json(capsys, "compare", "nvidia-t4", "nvidia-l4", "host", "--dtype", "fp32")
    t4, _, host = result["rows"]
    expected = isa_peaks(detect_cpu(), 9.0, "measured")["fp32"].gflops / 1e3
    assert host["slug"] == "host" and host["name"].startswith("host: ")
    assert host["peak"] == pytest.approx(expected)
    assert host["peak_ratio"] == pytest.approx(expected / t4["peak"])
    assert host["memory_bandwidth_gbs"] == 12.5  # the fastest stream (no read measured)
    assert (host["tdp_w"], host["price_usd"], host["peak_per_watt"]) == (None, None, None)
    assert main(["hw", "compare", "host", "nvidia-t4"]) == 0
    text = capsys.readouterr().out
    assert "ratios (x) against host" in text and "peaks are ISA ceilings" in text


def test_compare_prints_ratios_and_the_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "compare", "nvidia-a100-sxm4", "nvidia-h100-sxm5", "nvidia-t4"]) == 0
    text = capsys.readouterr().out
    assert "bf16 dense TFLOPS" in text and "ratios (x) against nvidia-a100-sxm4" in text
    assert "1.00x" in text and "3.17x" in text
    result = _json(capsys, "compare", "nvidia-a100-sxm4", "nvidia-t4", "--dtype", "int8")
    assert set(result) == {"dtype", "sparse", "unit", "baseline", "rows"}
    assert (result["dtype"], result["unit"], result["baseline"]) == (
        "int8",
        "TOPS",
        "nvidia-a100-sxm4",
    )
    assert all(set(row) == ROW_KEYS for row in result["rows"])
    assert result["rows"][1]["peak_ratio"] == 130 / 624


def test_compare_sparse_reaches_sparse_only_products(capsys: pytest.CaptureFixture[str]) -> None:
    result = _json(capsys, "compare", "nvidia-t4", "moffett-s4", "--dtype", "int8", "--sparse")
    assert result["sparse"] is True
    assert [row["peak"] for row in result["rows"]] == [None, 943.6]


@pytest.mark.parametrize(
    "args",
    [
        ["hw", "show", "nvidia-z9000"],
        ["hw", "compare", "nvidia-t4", "nope"],
        ["hw", "compare", "nvidia-t4"],
        ["hw", "show", "nvidia-t4", "--refresh"],
    ],
)
def test_bad_names_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("runner: error: ")
    assert captured.err.count("\n") == 1


def test_unknown_name_has_no_traceback_in_a_real_process() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "runner.cli", "hw", "show", "h100"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 2
    assert "Traceback" not in process.stderr
    assert process.stderr.strip().splitlines() == [process.stderr.strip()]
    assert "did you mean nvidia-h100-pcie, nvidia-h100-sxm5" in process.stderr
