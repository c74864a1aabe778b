"""A bench pipeline is resolved for the benchmarked target: fusion passes emit only the fused
ops that target runs, the resolved text is recorded, and a pass set to another target is
refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_models import save_gemm_relu

from passes.pipeline import PipelineError, parse_pipeline
from passes.target_binding import bind_pipeline
from runner.cli import main

PARTIAL = "fake_targets:PartialTarget"  # runs MatMul, Add and Relu only
QUICK = ["--min-duration", "0.05", "--min-queries", "3"]


@pytest.fixture
def gemm_relu_path(tmp_path: Path) -> Path:
    return save_gemm_relu(tmp_path / "gemm_relu.onnx")


def test_pipeline_fusions_default_to_the_benchmarked_target():
    resolved = bind_pipeline("O1", "tvm")
    assert resolved == (
        "fold-constants,remove-identity,cse,dce,fuse-conv-bn,fuse-matmul-add,"
        "recognize-gelu{target=tvm},recognize-layernorm{target=tvm},fuse-attention{target=tvm},"
        "fuse-activation{target=tvm},dce"
    )
    configs = {type(p).name: p.config for p in parse_pipeline(resolved)}
    assert configs["fuse-activation"].target == "tvm"
    assert bind_pipeline("", "tvm") == ""
    options = "fuse-activation{target=onnxruntime},sparsify{pattern=2:4}"
    assert bind_pipeline(options, "onnxruntime") == options


def test_pipeline_set_to_another_target_is_refused():
    with pytest.raises(PipelineError, match=r"pass 'fuse-activation' is set to target=onnxr"):
        bind_pipeline("O1,fuse-activation{target=onnxruntime}", "tvm")


def test_bench_pipeline_resolved_for_target_keeps_work_on_it(gemm_relu_path, tmp_path, capsys):
    """Unresolved, fuse-activation would turn Gemm+Relu into FusedGemm, which the partial
    target cannot run: both nodes would fall back. Resolved, it skips, and Relu stays on it."""
    args = ["bench", "--model", str(gemm_relu_path), "--target", PARTIAL, "--json"]
    out = ["--out", str(tmp_path / "out"), "--pipeline", "fuse-activation"]
    assert main([*args, *out, *QUICK]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pipeline"] == "fuse-activation"
    assert doc["resolved_pipeline"] == f"fuse-activation{{target={PARTIAL}}}"
    (audited,) = doc["audit"]["passes"]
    assert audited["modified"] is False
    coverage = doc["batches"][0]["coverage"]
    assert coverage["nodes"] == 2 and coverage["fallback_nodes"] == 1  # the Gemm
    assert coverage["node_coverage"] == 0.5
    assert main(["report", "show", str(tmp_path / "out")]) == 0
    shown = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert f"pipeline  fuse-activation (resolved: fuse-activation{{target={PARTIAL}}})" in shown


def test_bench_pipeline_for_another_target_fails_in_one_line(gemm_relu_path, tmp_path, capsys):
    pipeline = "fuse-activation{target=onnxruntime}"
    args = ["bench", "--model", str(gemm_relu_path), "--target", PARTIAL, "--pipeline", pipeline]
    assert main([*args, "--out", str(tmp_path / "out"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert f"runs for target '{PARTIAL}'" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "out").exists()


def test_bench_tvm_with_o1_runs_every_node_on_tvm(small_model_path, tmp_path, capsys):
    """Conv+Relu under O1: bound to onnxruntime it would become FusedConv and fall back."""
    pytest.importorskip("tvm", reason="the tvm target needs apache-tvm")
    args = ["bench", "--model", str(small_model_path), "--target", "tvm", "--pipeline", "O1"]
    assert main([*args, "--out", str(tmp_path / "out"), "--json", *QUICK]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "fuse-activation{target=tvm}" in doc["resolved_pipeline"]
    coverage = doc["batches"][0]["coverage"]
    assert coverage["fallback_nodes"] == 0 and coverage["flop_coverage"] == 1.0


def test_run_pipeline_resolved_for_target_keeps_work_on_it(gemm_relu_path, tmp_path, capsys):
    """`runner run --pipeline` binds the pipeline like bench: Gemm+Relu stays two nodes."""
    args = ["run", str(gemm_relu_path), "--target", PARTIAL, "--pipeline", "fuse-activation"]
    assert main([*args, "--output-dir", str(tmp_path / "out"), "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert run["node_coverage"] == 0.5  # the Gemm falls back; Relu runs on the target


def test_run_pipeline_for_another_target_fails_in_one_line(gemm_relu_path, tmp_path, capsys):
    pipeline = "fuse-activation{target=onnxruntime}"
    args = ["run", str(gemm_relu_path), "--target", PARTIAL, "--pipeline", pipeline]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 2
    assert f"runs for target '{PARTIAL}'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
