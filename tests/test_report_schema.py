"""The result schema: documents round-trip, version 1 documents upgrade, a newer or broken one is
refused with the file and the field named, and a crash while writing never leaves half a
document behind."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from runner.report.schema import (
    SCHEMA,
    ResultError,
    read_result,
    stamp,
    upgrade,
    validate,
    write_result,
)

ENVIRONMENT = {
    "host": {"cpu": "Test CPU", "cores": 2, "threads": 2, "flags": ["avx2"], "memory_gib": 8.0},
    "gpus": [],
    "os": "Linux",
    "python": "3.11.7",
    "packages": {"asicperf": "0.1.0"},
    "git": {"revision": "0123abc", "dirty": False},
    "command": ["runner", "bench", "--level", "op"],
    "seed": 0,
    "threads": {"cpu_count": 2, "env": {"OMP_NUM_THREADS": None}},
}
OP_CASE = {
    "op": "add",
    "provider": "numpy",
    "dtype": "fp32",
    "shape": "8x8",
    "latency_us": {"median": 2.0, "mean": 2.1, "p10": 1.9, "p90": 2.4, "iqr": 0.2},
    "samples_us": [2.0, 1.9, 2.4],
    "gflops": 0.032,
    "gbps": 0.384,
    "intensity": 0.083,
    "bound": "cache",
    "peak_fraction": None,
    "noisy": False,
}
OP_BODY = {
    "suite": "add-8x8",
    "seconds": 0.5,
    "policy": {"min_samples": 10},
    "rooflines": {},
    "cases": [OP_CASE],
    "unsupported": [],
    "failed": [],
}


def _op_document() -> dict:
    body = copy.deepcopy(OP_BODY)
    return stamp("op", "2026-11-28T00:00:00+00:00", copy.deepcopy(ENVIRONMENT), body)


def test_a_document_round_trips_through_a_file(tmp_path: Path) -> None:
    document = _op_document()
    path = write_result(tmp_path / "r" / "result.json", document)
    assert read_result(path) == document
    assert read_result(tmp_path / "r") == document  # a result folder names its result.json
    assert document["schema"] == SCHEMA == "asicperf.result/2" and document["kind"] == "op"


def test_a_model_document_from_runner_bench_reads_back(
    tmp_path: Path, relu_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    args = ["bench", "--model", str(relu_path), "--target", "bench_targets:SleepyTarget"]
    quick = ["--min-duration", "0.1", "--min-queries", "5", "--batch", "1,2", "--out", str(out)]
    assert main([*args, *quick, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert read_result(out) == printed
    assert printed["environment"]["host"]["cores"] >= 1
    assert printed["target_info"]["name"] == "sleepy"


V1_MODEL = {
    "model": "resnet50",
    "ir_fingerprint": "sha256:ab",
    "target": "onnxruntime",
    "pipeline": None,
    "scenario": "single-stream",
    "workload": {},
    "settings": {"seed": 3},
    "compile_s": 1.5,
    "batches": [
        {
            "batch_size": 1,
            "qps": 30.0,
            "latency_ms": {"mean": 33, "p50": 33, "p90": 34, "p99": 35, "min": 32, "max": 36},
            "valid": True,
            "why": "ok",
            "compile_s": 1.5,
            "queries": 90,
            "duration_s": 3.0,
            "drift": {"outputs": []},
            "accuracy": None,
        }
    ],
    "best_batch": 1,
    "accuracy": None,
    "drift": {"batch_size": 1, "outputs": []},
    "host": "cpu: Test CPU (2 threads)",
    "versions": {"asicperf": "0.1.0", "python": "3.11.7", "numpy": "2.0", "target": "1.20"},
}


def test_a_version_1_model_result_is_upgraded_on_read(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(V1_MODEL), encoding="utf-8")
    document = read_result(path)
    assert document["schema"] == SCHEMA and document["migrated_from"] == "1"
    assert document["kind"] == "model"
    assert document["target_info"] == {
        "name": "onnxruntime",
        "version": "1.20",
        "device": "cpu: Test CPU (2 threads)",
        "hardware": None,
    }
    assert document["batches"][0]["latencies_ms"] is None  # never recorded
    assert document["batches"][0]["qps"] == 30.0 and document["audit"] is None
    environment = document["environment"]
    assert environment["host"]["cpu"] == "cpu: Test CPU (2 threads)"
    assert environment["python"] == "3.11.7" and environment["seed"] == 3
    assert environment["packages"] == {"asicperf": "0.1.0", "numpy": "2.0"}
    assert environment["git"] is None and environment["command"] is None
    assert "host" not in document and "versions" not in document


def test_a_version_1_op_result_is_upgraded_on_read() -> None:
    old = {
        "schema": "asicperf.op-bench/1",
        "suite": "add-8x8",
        "command": ["runner", "bench", "--level", "op"],
        "created": "2026-11-28T00:00:00+00:00",
        "seed": 0,
        **{k: v for k, v in OP_BODY.items() if k != "suite"},
        "rooflines": {"host": {"device": "host: Test CPU"}},
    }
    document = upgrade(copy.deepcopy(old), "old.json")
    validate(document, "old.json")
    assert document["migrated_from"] == "asicperf.op-bench/1"
    assert document["environment"]["command"] == old["command"]
    assert document["environment"]["host"]["cpu"] == "host: Test CPU"
    assert document["created"] == old["created"] and document["cases"] == [OP_CASE]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not a JSON result"),
        ("[1, 2]", "not a result document (a JSON object)"),
        (
            json.dumps({"schema": "asicperf.result/3"}),
            "schema asicperf.result/3 is newer than this asicperf reads (asicperf.result/2); "
            "upgrade asicperf to read it",
        ),
        (json.dumps({"schema": "someone.else/1"}), "unknown result schema 'someone.else/1'"),
        (json.dumps({"model": "m"}), "unknown result schema None"),
    ],
)
def test_unreadable_documents_are_refused_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "result.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ResultError) as caught:
        read_result(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.pop("environment"), "field environment is missing"),
        (lambda d: d["cases"][0].pop("latency_us"), "field cases[0].latency_us is missing"),
        (lambda d: d["cases"][0].update(noisy="no"), "cases[0].noisy must be bool, not str"),
        (lambda d: d["cases"][0].update(gflops=True), "cases[0].gflops must be int or float"),
        (lambda d: d.update(kind="kernel"), "kind 'kernel' is not one of model, op"),
        (lambda d: d["environment"].update(git={"revision": 7, "dirty": False}), "git.revision"),
    ],
)
def test_a_field_of_the_wrong_type_is_named(tmp_path: Path, damage, message: str) -> None:
    document = _op_document()
    damage(document)
    path = tmp_path / "result.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ResultError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_result(path)
    with pytest.raises(ResultError):  # nor is such a document ever written
        write_result(tmp_path / "other.json", document)
    assert not (tmp_path / "other.json").exists()


def test_a_failed_write_leaves_the_previous_result(tmp_path: Path, monkeypatch) -> None:
    path = write_result(tmp_path / "result.json", _op_document())
    before = path.read_bytes()
    newer = _op_document()
    newer["suite"] = "newer"

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_result(path, newer)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left


def test_a_process_killed_while_writing_leaves_a_whole_document(tmp_path: Path) -> None:
    """The writer is SIGKILLed after its temp file is written and before the rename: the
    result on disk is still the previous, complete one."""
    path = write_result(tmp_path / "result.json", _op_document())
    before = read_result(path)
    script = f"""
import json, os, signal
import runner.report.schema as schema
document = json.loads(open({str(path)!r}).read())
document["suite"] = "never written"
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
schema.write_result({str(path)!r}, document)
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == -9
    assert read_result(path) == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "result.json"]
    assert all(name.startswith(".result.json.") for name in leftovers)
