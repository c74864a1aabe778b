"""`runner bench --level op`: the result document's fields and roofline figures against a known
host measurement, failures recorded and signalled, suites, and one-line errors with no result
file left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ir.files import CACHE_ENV
from runner.cli import main
from runner.results.files import read_result
from runner.results.op import OpResult
from targets.hardware.cpu_peaks import isa_peaks
from targets.hardware.host import CACHE_SCHEMA, HostMeasurement, detect_cpu

QUICK = ["--max-time", "0.2", "--min-time", "0.01"]
GEMM_GFLOPS, COPY_GBS, TRIAD_GBS, CLOCK_GHZ = 300.0, 40.0, 30.0, 9.0


def _ceiling(dtype: str) -> float:
    """This host's ISA ceiling at the known clock (above any reported one, so it is used)."""
    return isa_peaks(detect_cpu(), CLOCK_GHZ, "measured")[dtype].gflops


@pytest.fixture(autouse=True)
def known_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host measurement with round figures, so the peak fractions can be checked exactly."""
    cache = tmp_path / "cache"
    cache.mkdir()
    measured = HostMeasurement(
        GEMM_GFLOPS, 2048, COPY_GBS, TRIAD_GBS, 512, 8, 2, "2", "now", 1.0, CLOCK_GHZ, "known"
    )
    document = {"schema": CACHE_SCHEMA, "entries": {detect_cpu().cache_key(): measured.to_json()}}
    (cache / "host.json").write_text(json.dumps(document), encoding="utf-8")
    monkeypatch.setenv(CACHE_ENV, str(cache))


def _bench(capsys, out: Path, *args: str) -> dict:
    assert main(["bench", "--level", "op", "--out", str(out), "--json", *QUICK, *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_document_carries_every_case_field(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    doc = _bench(
        capsys, out, "--provider", "numpy,onnxruntime", "--op", "add", "--shape", "1024x1024"
    )
    assert doc["schema"] == "asicperf.result/4" and doc["suite"] == "add-1024x1024"
    assert doc["kind"] == "op" and doc["environment"]["command"][:3] == [
        "runner",
        "bench",
        "--level",
    ]
    assert [(c["provider"], c["op"], c["dtype"], c["shape"]) for c in doc["cases"]] == [
        ("numpy", "add", "fp32", "1024x1024"),
        ("onnxruntime", "add", "fp32", "1024x1024"),
    ]
    for case in doc["cases"]:
        latency = case["latency_us"]
        assert latency["p10"] <= latency["median"] <= latency["p90"]
        assert {"mean", "iqr"} <= set(latency) and isinstance(case["noisy"], bool)
        assert case["flops"] == 1024 * 1024 and case["bytes"] == 3 * 4 * 1024 * 1024
        assert case["gbps"] == pytest.approx(case["bytes"] / latency["median"] / 1e3)
        assert case["gflops"] == pytest.approx(case["flops"] / latency["median"] / 1e3)
        # 12 MiB is beyond the (known) 8 MiB LLC: memory-bound, judged against the copy,
        # the fastest stream measured
        assert case["bound"] == "memory"
        assert case["peak_fraction"] == pytest.approx(case["gbps"] / COPY_GBS)
        assert len(case["samples_us"]) == case["samples"] and case["device"].startswith("host: ")
    roof = doc["rooflines"]["host"]
    assert roof["compute_gflops"]["fp32"]["value"] == pytest.approx(_ceiling("fp32"))
    assert roof["bandwidth_gbs"]["value"] == COPY_GBS
    assert roof["achievable"]["compute_gflops"]["fp32"]["value"] == GEMM_GFLOPS
    assert roof["achievable"]["bandwidth_gbs"]["value"] == TRIAD_GBS
    assert json.loads((out / "result.json").read_text()) == doc


def test_a_gemm_is_judged_against_the_compute_ceiling(tmp_path, capsys) -> None:
    doc = _bench(
        capsys, tmp_path / "o", "--provider", "numpy", "--op", "gemm", "--shape", "256x256x256"
    )
    (case,) = doc["cases"]
    assert case["bound"] == "compute"
    assert case["peak_fraction"] == pytest.approx(case["gflops"] / _ceiling("fp32"))


def test_flushed_caches_put_every_case_under_the_memory_roof(tmp_path, capsys) -> None:
    args = ["--provider", "numpy", "--op", "softmax", "--shape", "4x8"]
    (warm,) = _bench(capsys, tmp_path / "warm", *args)["cases"]
    assert warm["bound"] == "cache" and warm["peak_fraction"] is None
    flushed = _bench(capsys, tmp_path / "cold", *args, "--flush-cache")
    (cold,) = flushed["cases"]
    assert flushed["policy"]["flush_cache_bytes"] == 2 * 8 * 2**20  # twice the 8 MiB LLC
    assert cold["bound"] == "memory"
    assert cold["peak_fraction"] == pytest.approx(cold["gbps"] / COPY_GBS)


def test_a_failing_kernel_is_recorded_and_the_exit_status_says_so(tmp_path, capsys) -> None:
    out = tmp_path / "o"
    args = ["--provider", "fake_providers:WrongProvider,numpy", "--op", "add", "--shape", "8x8"]
    assert main(["bench", "--level", "op", "--out", str(out), "--json", *QUICK, *args]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert [c["provider"] for c in doc["cases"]] == ["numpy"]
    (failure,) = doc["failed"]
    assert failure["provider"] == "wrong"
    assert "differs from the numpy reference" in failure["reason"]
    assert "runner: 1 case(s) failed their check" in captured.err
    assert json.loads((out / "result.json").read_text())["failed"] == doc["failed"]


def test_the_op_result_round_trips_through_its_records(tmp_path, capsys) -> None:
    """Cases, a failure, an unsupported case and the host's roofline: the JSON `runner bench`
    wrote reads as the record, which writes the same JSON again."""
    out = tmp_path / "o"
    providers = "fake_providers:WrongProvider,fake_providers:DeviceProvider,numpy"
    args = ["--provider", providers, "--op", "add,softmax", "--shape", "8x8"]
    assert main(["bench", "--level", "op", "--out", str(out), "--json", *QUICK, *args]) == 1
    printed = json.loads(capsys.readouterr().out)
    result = read_result(out)
    assert isinstance(result, OpResult) and result.to_json() == printed
    assert [(c.op, c.provider) for c in result.cases] == [
        ("add", "device"),
        ("add", "numpy"),
        ("softmax", "numpy"),
    ]
    assert [(f.op, f.provider) for f in result.failed] == [("add", "wrong")]
    assert [(u.op, u.provider, u.reason) for u in result.unsupported] == [
        ("softmax", "wrong", "adds only"),
        ("softmax", "device", "adds only"),
    ]
    assert set(result.rooflines) == {"host", "nvidia-h200"}
    assert result.rooflines["host"].bandwidth_gbs is not None
    assert result.rooflines["host"].bandwidth_gbs.value == COPY_GBS


def test_bench_dtype_no_provider_supports_prints_why_and_fails(tmp_path, capsys) -> None:
    """`--dtype bf16` on providers without it printed an empty table and exited 0."""
    out = tmp_path / "o"
    args = ["--provider", "numpy,onnxruntime", "--op", "gemm", "--dtype", "bf16"]
    assert main(["bench", "--level", "op", "--out", str(out), *args, "--shape", "8x8x8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("runner: error: nothing to run: ")
    assert "numpy lacks gemm bf16 (numpy has no bf16 arithmetic" in err
    assert "; onnxruntime lacks gemm bf16 (the onnxruntime CPU execution provider" in err
    assert not out.exists()


def test_bench_unsupported_cases_print_their_reasons_not_a_count(tmp_path, capsys) -> None:
    suite = tmp_path / "mixed.toml"
    suite.write_text(
        '[[cases]]\nop = "gemm"\ndtypes = ["bf16"]\nshapes = ["8x8x8"]\n'
        '[[cases]]\nop = "softmax"\nshapes = ["4x8"]\n',
        encoding="utf-8",
    )
    args = ["bench", "--level", "op", "--out", str(tmp_path / "o"), *QUICK]
    assert main([*args, "--provider", "numpy", "--suite", str(suite)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "not supported: numpy lacks gemm bf16 (numpy has no bf16 arithmetic" in out


@pytest.mark.parametrize("kind", ["existing file", "proc"])
def test_bench_out_unwritable_fails_before_measuring(tmp_path, capsys, monkeypatch, kind) -> None:
    import runner.op_bench_command as command

    monkeypatch.setattr(command, "run_cases", lambda *a, **k: pytest.fail("measured"))
    monkeypatch.setattr(command, "host_profile", lambda: pytest.fail("measured the host"))
    blocker = tmp_path / "ro"
    blocker.write_text("a file")
    out = blocker / "op" if kind == "existing file" else Path("/proc/x")
    argv = ["bench", "--level", "op", "--out", str(out), "--provider", "numpy", "--op", "add"]
    assert main([*argv, "--shape", "8x8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"runner: error: --out {out}: ") and err.count("\n") == 1
    assert "Traceback" not in err and blocker.read_text() == "a file"


def test_a_suite_file_restricts_providers_and_is_filtered_by_dtype(tmp_path, capsys) -> None:
    suite = tmp_path / "mine.toml"
    suite.write_text(
        '[[cases]]\nop = "gemm"\ndtypes = ["fp32", "int8"]\nshapes = ["16x16x16"]\n'
        'providers = ["onnxruntime"]\n[[cases]]\nop = "softmax"\nshapes = ["4x8"]\n'
        'providers = ["numpy"]\n',
        encoding="utf-8",
    )
    doc = _bench(capsys, tmp_path / "o", "--suite", str(suite), "--dtype", "int8")
    assert doc["suite"] == "mine"
    assert [(c["op"], c["dtype"], c["provider"]) for c in doc["cases"]] == [
        ("gemm", "int8", "onnxruntime")
    ]
    assert doc["rooflines"]["host"]["compute_gflops"]["int8"]["value"] > _ceiling("fp32")


def test_table_output(tmp_path, capsys) -> None:
    args = ["bench", "--level", "op", "--out", str(tmp_path / "o"), *QUICK]
    assert main([*args, "--provider", "numpy", "--op", "softmax", "--shape", "4x8"]) == 0
    out = capsys.readouterr().out
    assert "softmax" in out and "4x8" in out and "cache" in out
    assert "roofline of host" in out and f"results: {tmp_path / 'o'}" in out
    assert "fp32 achievable" in out and "memory achievable" in out and "ISA: " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--op", "gemmm"], "unknown op 'gemmm' (known: gemm,"),
        (["--op", "gemm", "--shape", "2x2"], "gemm shape '2x2' must be MxNxK"),
        (["--op", "softmax", "--dtype", "int8", "--shape", "2x2"], "does not support dtype"),
        (["--shape", "2x2"], "--shape needs --op"),
        (["--provider", "nope", "--op", "add", "--shape", "2x2"], "unknown provider 'nope'"),
        (["--suite", "nope"], "unknown suite 'nope'"),
        (["--suite", "default", "--op", "softmax", "--dtype", "int8"], "has no case with op"),
        (["--target", "onnxruntime"], "--target: not an option of --level op"),
        (["--resume"], "--resume: not an option of --level op"),
        (["--max-time", "0"], "timing: max_time_s must be > 0"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message) -> None:
    out = tmp_path / "o"
    assert main(["bench", "--level", "op", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0
    assert not out.exists()
