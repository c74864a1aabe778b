"""`runner report show` and `runner report compare`: the terminal view of one result, the B/A
ratios of matched rows, the Mann-Whitney significance of their raw samples, and one-line
errors. Documents are built here, small and with known figures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from report_documents import environment, read, stamp

from runner.bench.stats import latency_stats
from runner.cli import main
from runner.report.compare import compare_results
from runner.report.significance import Significance, mann_whitney_p

FINGERPRINT = "sha256:" + "ab" * 32


def _environment(cpu: str = "Test CPU") -> dict[str, Any]:
    """The shared test environment, with figures this file's assertions name."""
    env = environment(cpu, dirty=True)
    env["host"].update(cores=4, threads=8, memory_gib=16.0)
    env.update(os="Linux-test", python="3.11.7", seed=7)
    env["packages"] = {"asicperf": "0.1.0", "numpy": "2.4.6", "tvm": None}
    env["command"] = ["runner", "bench", "--model", "tiny model.onnx"]
    env["threads"] = {"cpu_count": 8, "env": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": None}}
    return env


def _drift(cosine: float) -> dict[str, Any]:
    return {
        "index": 0,
        "max_abs": 0.25,
        "mean_abs": 0.125,
        "max_rel": 0.5,
        "mean_rel": 0.0625,
        "cosine": cosine,
        "shape_match": True,
        "histogram": [1],
        "top1_agreement": 0.75,
    }


def _batch(size: int, qps: float, latencies: list[float] | None, cosine: float = 0.99) -> dict:
    return {
        "batch_size": size,
        "qps": qps,
        "latency_ms": latency_stats(latencies or [10.0]).to_json(),
        "latencies_ms": latencies,
        "valid": True,
        "why": "duration 1 s ≥ 1 s; [5] queries",  # brackets are text, not rich markup
        "compile_s": 0.5,
        "queries": len(latencies or [10.0]),
        "duration_s": 1.0,
        "drift": {"outputs": [_drift(cosine)]},
        "accuracy": {"metric": "top-1", "value": 0.9, "threshold": 0.8, "passed": True}
        if size == 1
        else None,
    }


AUDIT = {
    "fingerprint": "sha256:" + "cd" * 32,
    "passes": [
        {
            "seq": 1,
            "pass": "fold-constants",
            "config": {},
            "modified": False,
            "wall_ms": 0.5,
            "nodes_before": 8,
            "nodes_after": 8,
            "rule_counts": {},
            "numeric": None,
        },
        {
            "seq": 2,
            "pass": "quantize-int8",
            "config": {},
            "modified": True,
            "wall_ms": 5.25,
            "nodes_before": 8,
            "nodes_after": 24,
            "rule_counts": {"quantize": 2},
            "numeric": {"seed": 0, "vs_previous": [_drift(0.5)], "vs_input": [_drift(0.9999)]},
        },
    ],
}


def _model(
    batches: list[dict], *, cpu: str = "Test CPU", fingerprint: str = FINGERPRINT, **fields: Any
) -> dict[str, Any]:
    body = {
        "model": "tiny",
        "ir_fingerprint": fingerprint,
        "target": "onnxruntime",
        "target_info": {
            "name": "onnxruntime",
            "version": "1.32.0",
            "device": "cpu: Test CPU",
            "hardware": "host",
        },
        "target_options": {},
        "pipeline": None,
        "audit": None,
        "scenario": "offline",
        "compile_s": 1.0,
        "batches": batches,
        "best_batch": batches[-1]["batch_size"],
        "accuracy": batches[0]["accuracy"],
        "drift": {"batch_size": 1, "bins": ["0"], "outputs": [_drift(0.99)]},
        **fields,
    }
    return stamp("model", "2026-11-28T12:00:00+00:00", _environment(cpu), body)


def _case(provider: str, samples: list[float], p10: float, p90: float) -> dict[str, Any]:
    median = sorted(samples)[len(samples) // 2]
    return {
        "op": "gemm",
        "provider": provider,
        "dtype": "fp32",
        "shape": "64x64x64",
        "device": "host: Test CPU",
        "flops": 524288,
        "bytes": 49152,
        "intensity": 10.67,
        "gflops": 524288 / median / 1e3,
        "gbps": 49152 / median / 1e3,
        "bound": "compute",
        "peak_fraction": 0.5,
        "latency_us": {"median": median, "mean": median, "p10": p10, "p90": p90, "iqr": 1.0},
        "noise": 0.125,
        "noisy": True,
        "samples_us": samples,
    }


def _op(cases: list[dict]) -> dict[str, Any]:
    roofline = {
        "device": "host: Test CPU",
        "compute_gflops": {"fp32": {"value": 100.0, "source": "measured: numpy GEMM"}},
        "bandwidth_gbs": {"value": 20.0, "source": "measured: STREAM triad"},
        "cache_bytes": 8 * 2**20,
    }
    failed = {
        "op": "gemm",
        "provider": "wrong",
        "dtype": "fp32",
        "shape": "64x64x64",
        "reason": "differs from the numpy reference [max abs 1]",
    }
    body = {
        "suite": "mine",
        "seconds": 1.0,
        "policy": {"min_time_s": 0.1, "max_time_s": 5.0, "target_noise": 0.05},
        "rooflines": {"host": roofline},
        "cases": cases,
        "unsupported": [{**failed, "provider": "numba", "reason": "no kernel"}],
        "failed": [failed],
    }
    return stamp("op", "2026-11-28T12:00:00+00:00", _environment(), body)


def _write(folder: Path, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(document))
    return folder


def _show(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[str, list[list[str]]]:
    assert main(["report", "show", str(path)]) == 0
    out = capsys.readouterr().out
    return out, _cells(out)


def _cells(out: str) -> list[list[str]]:
    """The body rows of every table in `out`, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]


def test_show_model_prints_header_batches_drift_and_audit(tmp_path, capsys) -> None:
    batches = [_batch(1, 100.0, [10.0, 10.0, 12.0]), _batch(2, 150.0, [13.0, 14.0])]
    path = _write(tmp_path / "r", _model(batches, pipeline="int8", audit=AUDIT))
    out, rows = _show(capsys, path)
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0] == f"model result {path}"
    assert f"model     tiny ({FINGERPRINT})" in lines
    assert "target    onnxruntime, 1.32.0, cpu: Test CPU" in lines
    assert "pipeline  int8" in lines
    assert "git       0123456789ab (dirty)" in lines
    assert "command   runner bench --model 'tiny model.onnx'" in lines
    assert "seed      7" in lines
    assert "host      Test CPU (4 cores, 8 threads, 16.0 GiB)" in lines
    assert "packages  asicperf 0.1.0, numpy 2.4.6" in lines
    assert "threads   8 CPUs, OMP_NUM_THREADS=2" in lines
    assert ["1", "100.0", "10.000", "12.000", "-", "-", "VALID"] in rows  # no coverage recorded
    assert ["2", "150.0", "13.000", "14.000", "-", "-", "VALID"] in rows
    # the details table; p99 per batch was not recorded
    assert ["1", "10.667", "12.000", "-", "3", "0.50", "0.25"] in rows
    assert ["2", "13.500", "14.000", "-", "2", "0.50", "0.25"] in rows
    assert "batch 1: VALID: duration 1 s ≥ 1 s; [5] queries" in lines
    assert "best batch size: 2" in lines
    assert "accuracy: top-1 0.9000 (threshold 0.8, passed)" in lines
    assert ["0", "0.25", "0.125", "0.5", "0.9900000", "0.7500"] in rows
    assert ["1", "fold-constants", "no", "8 → 8", "0.500", "-", "-"] in rows
    assert ["2", "quantize-int8", "yes", "8 → 24", "5.250", "0.25", "0.9999000"] in rows


LOADGEN = {
    "scenario": "Server",
    "target_latency_percentile": 0.99,
    "early_stopping": ["Run unsuccessful."],
    "overlatency_queries": 40,
    "errors": ["error_runtime: Ending early: Ran out of generated queries."],
    "warnings": ["warning_generic_message: [a] note"],
    "logs": ["loadgen/batch-1/mlperf_log_summary.txt", "loadgen/batch-1/mlperf_log_detail.txt"],
}


def test_show_model_prints_loadgens_verdict_notes_and_where_its_logs_are(tmp_path, capsys) -> None:
    """An error LoadGen made the reason of an INVALID verdict is not printed twice; a warning
    is; the logs are named under the folder the result was read from."""
    invalid = _batch(1, 100.0, [10.0, 30.0])
    why = "performance constraints not satisfied: p99 over the 20 ms bound (40 of 400 queries over)"
    invalid.update(valid=False, why=f"{why}; {LOADGEN['errors'][0]}", loadgen=LOADGEN)
    valid = _batch(2, 150.0, [13.0, 14.0])
    valid["loadgen"] = {**LOADGEN, "warnings": [], "logs": [], "errors": ["error_x: odd"]}
    document = _model([invalid, valid])
    document["accuracy"]["logs"] = ["loadgen/batch-1-accuracy/mlperf_log_accuracy.json"]
    path = _write(tmp_path / "r", document)
    lines = [line.rstrip() for line in _show(capsys, path / "result.json")[0].splitlines()]
    assert f"batch 1: INVALID: {why}; error_runtime: Ending early: Ran out of generated" in (
        " ".join(lines)
    )
    assert "batch 1: LoadGen warning: warning_generic_message: [a] note" in lines
    assert not any("batch 1: LoadGen error" in line for line in lines)
    assert "batch 2: LoadGen error: error_x: odd" in lines
    assert (
        f"batch 1: LoadGen logs in {path}/loadgen/batch-1: mlperf_log_summary.txt, "
        "mlperf_log_detail.txt" in " ".join(lines)
    )
    assert not any(line.startswith("batch 2: LoadGen logs") for line in lines)
    assert (
        f"accuracy: LoadGen logs in {path}/loadgen/batch-1-accuracy: mlperf_log_accuracy.json"
        in " ".join(lines)
    )


def test_show_upgraded_version_1_document_says_what_it_lacks(tmp_path, capsys) -> None:
    v1 = {
        key: value
        for key, value in _model([_batch(1, 33.8, None)]).items()
        if key not in ("schema", "kind", "created", "environment", "target_info", "audit")
    }
    v1["host"] = "cpu: Old CPU (2 threads)"
    v1["versions"] = {"asicperf": "0.0.9", "python": "3.11.7", "target": "1.20.0"}
    for batch in v1["batches"]:
        del batch["latencies_ms"]
    out, rows = _show(capsys, _write(tmp_path / "old", v1))
    lines = [line.rstrip() for line in out.splitlines()]
    assert "read from schema version 1: no raw latencies/environment recorded" in lines
    assert "git       -" in lines and "created   -" in lines and "command   -" in lines
    assert "host      cpu: Old CPU (2 threads)" in lines
    assert rows[0][:2] == ["1", "33.8"]


def test_show_op_prints_cases_rooflines_and_failures(tmp_path, capsys) -> None:
    path = _write(tmp_path / "op", _op([_case("numpy", [4.0, 5.0, 6.0], 4.0, 6.0)]))
    out, rows = _show(capsys, path)
    case = ["gemm", "fp32", "64x64x64", "numpy", "5.0", "4.0..6.0", "104.9", "9.8", "10.67"]
    assert [*case, "compute", "50%", "12.5% noisy"] in rows
    assert "roofline of host (host: Test CPU)" in out
    assert ["fp32", "100 GFLOP/s", "measured: numpy GEMM"] in rows
    assert ["memory", "20.0 GB/s", "measured: STREAM triad"] in rows
    assert ["cache", "8 MiB", "a working set that fits is cache-bound"] in rows
    assert "not supported: numba lacks gemm fp32 (no kernel)" in out
    reason = "differs from the numpy reference [max abs 1]"
    assert f"FAILED gemm/fp32/64x64x64 on wrong: {reason}" in out


def test_mann_whitney_matches_hand_computed_values() -> None:
    # [1..5] vs [6..10]: ranks of A are 1..5, U = 15 - 5*6/2 = 0, mean n1*n2/2 = 12.5,
    # variance n1*n2*(n+1)/12 = 25*11/12 (no ties); with the continuity correction
    # z = (12.5 - 0.5) / sqrt(275/12) = 2.50672, p = erfc(z / sqrt 2) = 0.012186.
    p = mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert p == pytest.approx(math.erfc(12 / math.sqrt(275 / 12) / math.sqrt(2)), rel=1e-12)
    assert round(p, 6) == 0.012186
    # [1,2,2,3] vs [2,3,3,4]: the 2s share ranks 2..4 (3 each), the 3s 5..7 (6 each); A's rank
    # sum 1+3+3+6 = 13, U = 13 - 10 = 3, mean 8. Ties: two groups of 3, sum(t^3 - t) = 48,
    # variance 16/12 * (9 - 48/56) = 228/21; z = (5 - 0.5) / sqrt(228/21), p = 0.172034.
    p = mann_whitney_p([1, 2, 2, 3], [2, 3, 3, 4])
    assert p == pytest.approx(math.erfc(4.5 / math.sqrt(228 / 21) / math.sqrt(2)), rel=1e-12)
    assert round(p, 6) == 0.172034
    assert mann_whitney_p([3.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == 1.0
    assert mann_whitney_p([5.0, 5.0], [5.0]) == 1.0  # all tied: nothing tells them apart


def test_significance_notes() -> None:
    assert Significance(0.41, False).note() == "not significant (p=0.41): the distributions overlap"
    assert (
        Significance(0.0119, True).note()
        == "significant (p=0.012), but the p10..p90 ranges overlap"
    )
    assert Significance(1e-9, False).note() == "significant (p<0.001)"
    assert Significance(None, None).note() == "no raw samples: significance unknown"


def test_compare_model_ratios_and_significance(tmp_path, capsys) -> None:
    same = [10.0, 11.0, 12.0, 13.0, 14.0]
    a = _model([_batch(1, 80.0, same), _batch(2, 100.0, [1.0, 2.0, 3.0, 4.0, 5.0])])
    b = _model(
        [_batch(1, 200.0, same, cosine=0.98), _batch(2, 300.0, [6.0, 7.0, 8.0, 9.0, 10.0])],
        cpu="Other CPU",
    )
    b["batches"].append(_batch(4, 400.0, [1.0]))
    args = ["report", "compare", str(_write(tmp_path / "a", a)), str(_write(tmp_path / "b", b))]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["a"] == str(tmp_path / "a") and doc["b"] == str(tmp_path / "b")
    assert doc["differences"] == {
        "host": {"a": "Test CPU, 4 cores", "b": "Other CPU, 4 cores"},
    }
    assert doc["warnings"] == [
        "different hosts (Test CPU, 4 cores vs Other CPU, 4 cores): the ratios include the "
        "machines' difference"
    ]
    rows = {(row["key"], row["metric"]): row for row in doc["rows"]}
    qps = rows["batch 1", "samples/s"]
    assert (qps["a"], qps["b"], qps["ratio"]) == (80.0, 200.0, 2.5)
    assert qps["p_value"] == 1.0 and qps["overlap"] is True
    both = "not significant (p=1): the distributions overlap; the p10..p90 ranges overlap"
    assert qps["note"] == both
    cosine = rows["batch 1", "worst cosine"]
    assert (cosine["ratio"], cosine["p_value"], cosine["note"]) == (0.98 / 0.99, None, None)
    assert rows["batch 2", "samples/s"]["ratio"] == 3.0
    separate = rows["batch 2", "p50 ms"]
    assert (separate["a"], separate["b"], separate["ratio"]) == (3.0, 8.0, 8.0 / 3.0)
    assert round(separate["p_value"], 6) == 0.012186 and separate["overlap"] is False
    assert separate["note"] == "significant (p=0.012)"
    assert ("batch 2", "accuracy") not in rows  # neither side measured it
    assert doc["only_in_a"] == [] and doc["only_in_b"] == ["batch 4"]

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "warning: different hosts (Test CPU, 4 cores vs Other CPU, 4 cores)" in out
    assert "  host: Test CPU, 4 cores (A) vs Other CPU, 4 cores (B)" in out
    table = _cells(out)
    assert ["batch 1", "samples/s", "80.0", "200.0", "2.5", both] in table
    assert ["", "mean ms", "12.000", "12.000", "1", ""] in table
    assert "only in B: batch 4" in out


def test_compare_without_raw_samples_says_significance_unknown() -> None:
    old = _model([_batch(1, 50.0, None)])
    new = _model([_batch(1, 100.0, [1.0, 2.0])], fingerprint="sha256:" + "ef" * 32)
    comparison = compare_results(read(old), read(new), "old", "new")
    qps = comparison.rows[0]
    assert (qps.metric, qps.ratio, qps.p_value, qps.overlap) == ("samples/s", 2.0, None, None)
    assert qps.note == "no raw samples: significance unknown"
    assert comparison.warnings == (
        "different models (sha256:abababababab vs sha256:efefefefefef): the ratios compare "
        "different work",
    )


def test_compare_op_cases_by_op_dtype_shape_provider() -> None:
    a = _op([_case("numpy", [4.0, 5.0, 6.0], 4.0, 6.0), _case("tvm", [9.0], 9.0, 9.0)])
    b = _op([_case("numpy", [1.0, 2.0, 2.5], 1.0, 2.5), _case("numba", [3.0], 3.0, 3.0)])
    comparison = compare_results(read(a), read(b), "a", "b").to_json()
    key = "gemm fp32 64x64x64 on numpy"
    median, gflops, gbps = comparison["rows"]
    assert (median["key"], median["metric"], median["ratio"]) == (key, "median µs", 0.4)
    assert gflops["metric"] == "GFLOP/s" and gflops["ratio"] == pytest.approx(2.5)
    assert gbps["metric"] == "GB/s" and median["overlap"] is False
    assert (
        median["note"] == f"not significant (p={median['p_value']:.2g}): the distributions overlap"
    )
    assert comparison["only_in_a"] == ["gemm fp32 64x64x64 on tvm"]
    assert comparison["only_in_b"] == ["gemm fp32 64x64x64 on numba"]
    assert comparison["differences"] == {}


def test_compare_op_with_model_is_one_line_error(tmp_path, capsys) -> None:
    op = _write(tmp_path / "op", _op([]))
    model = _write(tmp_path / "model", _model([_batch(1, 1.0, [1.0])]))
    assert main(["report", "compare", str(op), str(model)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"runner: error: cannot compare {op} (op result) with {model} (model result): compare "
        "model results with model results, op results with op results, llm results with llm "
        "results, profile results with profile results\n"
    )


@pytest.mark.parametrize("command", [["show"], ["compare", "-"]])
def test_unknown_file_is_one_line_error(tmp_path, capsys, command) -> None:
    missing = tmp_path / "nothing.json"
    assert main(["report", command[0], str(missing), *command[1:]]) == 2
    assert capsys.readouterr().err == f"runner: error: {missing}: no such result file\n"
