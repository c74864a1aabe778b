"""Result records and files: a document `runner bench` writes reads back as the same record and
writes back byte for byte the same JSON, version 1 documents upgrade, a newer or broken one is
refused with the file and the field named, and a crash while writing never leaves half a
document behind."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from report_documents import stamp

from runner.cli import main
from runner.results.document import SCHEMA
from runner.results.files import read_result, result_from_json, write_result
from runner.results.model import ModelResult
from runner.results.op import OpResult
from runner.results.record import ResultError

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
PIPELINE = "dce,mixed-precision{dtype=float16}"  # changes nothing, then changes the numbers
_OPTIONAL_CASE_FIELDS = (  # what OP_CASE leaves out, as older documents may
    "device",
    "flops",
    "bytes",
    "prepare_s",
    "cv",
    "noise",
    "samples",
    "warmup_calls",
    "total_s",
)
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


def test_a_result_round_trips_through_a_file(tmp_path: Path) -> None:
    result = OpResult.from_json(_op_document())
    path = write_result(tmp_path / "r" / "result.json", result)
    assert read_result(path) == result
    assert read_result(tmp_path / "r") == result  # a result folder names its result.json
    assert json.loads(path.read_text())["schema"] == SCHEMA == "asicperf.result/4"
    assert result.KIND == "op" and result.cases[0].latency_us.median == 2.0
    assert result.environment.git is not None and result.environment.git.revision == "0123abc"


def test_a_model_result_from_runner_bench_round_trips(
    tmp_path: Path, small_model_path: Path, capsys
) -> None:
    """What `runner bench` printed and wrote, with a pipeline's audit and per-pass drift, is the
    record read back, and the record writes the same JSON again."""
    out = tmp_path / "out"
    args = ["bench", "--model", str(small_model_path), "--target", "bench_targets:SleepyTarget"]
    quick = ["--min-duration", "0.05", "--min-queries", "3", "--out", str(out)]
    assert main([*args, *quick, "--pipeline", PIPELINE, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    result = read_result(out)
    assert isinstance(result, ModelResult)
    assert result.to_json() == printed == json.loads((out / "result.json").read_text())
    assert ModelResult.from_json(printed) == result
    assert result.environment.host.cores is not None and result.environment.host.cores >= 1
    assert result.target_info.name == "sleepy" and result.pipeline == PIPELINE
    (batch,) = result.batches
    assert batch.latencies_ms is not None and len(batch.latencies_ms) == batch.queries
    assert result.audit is not None and result.audit == batch.audit
    changed = [p for p in result.audit.passes if p.modified]
    assert changed and all(p.numeric is not None and p.numeric.vs_input for p in changed)
    assert result.drift.batch_size == 1 and batch.drift.batch_size is None
    assert "batch_size" not in printed["batches"][0]["drift"]


def test_unknown_fields_are_kept_and_written_back(tmp_path: Path) -> None:
    document = _op_document()
    document["cases"][0]["vendor_counter"] = {"cycles": 12}
    document["from_a_newer_asicperf"] = [1, 2]
    result = OpResult.from_json(document)
    assert result.extra == {"from_a_newer_asicperf": [1, 2]}
    assert result.cases[0].extra == {"vendor_counter": {"cycles": 12}}
    written = result.to_json()
    assert written["from_a_newer_asicperf"] == [1, 2]
    assert written["cases"][0]["vendor_counter"] == {"cycles": 12}
    assert OpResult.from_json(written) == result


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
    result = read_result(path)
    assert isinstance(result, ModelResult) and result.migrated_from == "1"
    info = result.target_info
    assert (info.name, info.version, info.hardware) == ("onnxruntime", "1.20", None)
    assert info.device == "cpu: Test CPU (2 threads)"
    (batch,) = result.batches
    assert batch.latencies_ms is None and batch.coverage is None  # never recorded
    assert batch.qps == 30.0 and batch.latency_ms.max == 36 and result.audit is None
    assert result.batch_choice is None and result.resolved_pipeline is None
    environment = result.environment
    assert environment.host.cpu == "cpu: Test CPU (2 threads)"
    assert environment.python == "3.11.7" and environment.seed == 3
    assert environment.packages == {"asicperf": "0.1.0", "numpy": "2.0"}
    assert environment.git is None and environment.command is None
    assert not {"host", "versions"} & set(result.to_json())
    written = write_result(tmp_path / "again.json", result)  # in the current version
    assert read_result(written) == result


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
    result = result_from_json(copy.deepcopy(old), "old.json")
    assert isinstance(result, OpResult) and result.migrated_from == "asicperf.op-bench/1"
    assert result.environment.command == tuple(old["command"])
    assert result.environment.host.cpu == "host: Test CPU"
    assert result.rooflines["host"].device == "host: Test CPU"
    assert result.created == old["created"] and result.policy.min_samples == 10
    assert [case.to_json() for case in result.cases] == [
        {**OP_CASE, **dict.fromkeys(_OPTIONAL_CASE_FIELDS)}
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not a JSON result"),
        ("[1, 2]", "not a result document (a JSON object)"),
        (
            json.dumps({"schema": "asicperf.result/5"}),
            "schema asicperf.result/5 is newer than this asicperf reads (asicperf.result/4); "
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
    with pytest.raises(ResultError) as caught:
        read_result(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_document_of_the_other_kind_is_not_read_as_this_one() -> None:
    with pytest.raises(ResultError) as caught:
        ModelResult.from_json(_op_document(), "op.json")
    assert str(caught.value) == "op.json: kind must be 'model', not 'op'"


def test_a_record_of_the_wrong_type_is_never_written(tmp_path: Path) -> None:
    result = OpResult.from_json(_op_document())
    broken = dataclasses.replace(result, suite=7)
    with pytest.raises(ResultError, match="suite must be str, not int"):
        write_result(tmp_path / "other.json", broken)
    assert not (tmp_path / "other.json").exists()


def test_a_failed_write_leaves_the_previous_result(tmp_path: Path, monkeypatch) -> None:
    path = write_result(tmp_path / "result.json", OpResult.from_json(_op_document()))
    before = path.read_bytes()
    newer = OpResult.from_json({**_op_document(), "suite": "newer"})

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
    path = write_result(tmp_path / "result.json", OpResult.from_json(_op_document()))
    before = read_result(path)
    script = f"""
import dataclasses, os, signal
from runner.results.files import read_result, write_result
result = dataclasses.replace(read_result({str(path)!r}), suite="never written")
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
write_result({str(path)!r}, result)
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == -9
    assert read_result(path) == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "result.json"]
    assert all(name.startswith(".result.json.") for name in leftovers)
