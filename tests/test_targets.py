"""Targets: discovery, capability checks, partitioning with fallback, isolation, `runner run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from bench_models import save_matmul
from bert_like import bert_like_feeds, build_bert_like
from onnx import TensorProto, helper, numpy_helper

from ir.drift import outputs_drift
from ir.errors import AsicperfError
from ir.low_precision import needs_emulation
from ir.model_io import load_model
from ir.reference import run_reference
from ir.seeded_inputs import seeded_inputs
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline
from runner.cli import main
from targets.executable import compile_model
from targets.isolation import TargetJob, run_isolated
from targets.onnxruntime_target import OnnxRuntimeTarget
from targets.reference_target import ReferenceTarget
from targets.registry import UnknownTargetError, describe, discover, get_target
from zoo.catalog import ZOO


def _chain(tmp_path: Path, dtype: int = TensorProto.FLOAT) -> Path:
    """x[2,4] -> MatMul n0 -> Add n1 -> Tanh n2 -> Relu n3 -> MatMul n4 -> y[2,3]."""
    rng = np.random.default_rng(0)
    np_type = helper.tensor_dtype_to_np_dtype(dtype)
    weights = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np_type), name)
        for name, shape in (("w1", (4, 8)), ("b1", (8,)), ("w2", (8, 3)))
    ]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["a"]),
            helper.make_node("Add", ["a", "b1"], ["c"]),
            helper.make_node("Tanh", ["c"], ["t"]),
            helper.make_node("Relu", ["t"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "chain",
        [helper.make_tensor_value_info("x", dtype, [2, 4])],
        [helper.make_tensor_value_info("y", dtype, [2, 3])],
        weights,
    )
    path = tmp_path / "chain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_builtin_targets_are_discovered_through_entry_points():
    entries = discover()
    assert {"onnxruntime", "reference"} <= set(entries)
    assert entries["onnxruntime"].source == "targets.onnxruntime_target:OnnxRuntimeTarget"
    assert describe(entries["reference"]).available


def test_a_target_can_be_named_by_import_path():
    assert get_target("fake_targets:PartialTarget").name == "partial"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no-such-target", "unknown target 'no-such-target' (known: "),
        ("fake_targets:Nothing", "target 'fake_targets:Nothing' cannot be loaded"),
        ("ir.errors:AsicperfError", "is not a Target subclass"),
    ],
)
def test_unknown_or_broken_targets_are_one_line_errors(name, message):
    with pytest.raises(UnknownTargetError) as caught:
        get_target(name)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_capability_check_refuses_an_unsupported_dtype(tmp_path):
    model = load_model(_chain(tmp_path, TensorProto.DOUBLE))
    with pytest.raises(AsicperfError) as caught:
        compile_model(get_target("fake_targets:PartialTarget"), model)
    assert str(caught.value) == (
        "target 'partial' does not support dtype float64: value 'x' of node n0 (MatMul); "
        "it runs float32"
    )


def test_partition_sends_unsupported_nodes_to_the_reference_path(tmp_path):
    model = load_model(_chain(tmp_path))
    executable = compile_model(get_target("fake_targets:PartialTarget"), model)
    plan = executable.plan
    assert [(s.on_target, s.nodes) for s in plan.segments] == [
        (True, ("n0", "n1")),
        (False, ("n2",)),
        (True, ("n3", "n4")),
    ]
    assert [(s.inputs, s.outputs) for s in plan.segments] == [
        (("x",), ("c",)),
        (("c",), ("t",)),
        (("t",), ("y",)),
    ]
    assert plan.fallback_groups == (("n2",),)
    assert plan.unsupported == {"n2": "Tanh is not supported"}
    assert plan.node_coverage == pytest.approx(4 / 5)
    # FLOPs: MatMul 2*2*8*4=128, Add 16, Tanh 16 (fallback), Relu 16, MatMul 2*2*3*8=96
    assert plan.flop_coverage == pytest.approx(256 / 272)
    assert executable.record.extra["partition"]["node_coverage"] == pytest.approx(0.8)
    assert [t.name for t, _ in executable.pieces] == ["partial", "reference", "partial"]
    feeds = seeded_inputs(model)
    expected = compile_model(ReferenceTarget(), model).session().run(feeds)
    np.testing.assert_allclose(executable.session().run(feeds)[0], expected[0], rtol=1e-6)


def test_partition_order_keeps_each_side_together(tmp_path):
    """MatMul feeds Tanh (fallback) and Relu; Add joins them: 3 segments, not 4."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["a"]),
            helper.make_node("Tanh", ["a"], ["t"]),
            helper.make_node("Relu", ["a"], ["r"]),
            helper.make_node("Add", ["t", "r"], ["y"]),
        ],
        "branch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")],
    )
    path = tmp_path / "branch.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    model = load_model(path)
    plan = compile_model(get_target("fake_targets:PartialTarget"), model).plan
    assert [(s.on_target, s.nodes) for s in plan.segments] == [
        (True, ("n0", "n2")),
        (False, ("n1",)),
        (True, ("n3",)),
    ]
    assert plan.segments[0].outputs == ("a", "r")


def _assert_matches_reference(model, feeds, rtol=1e-4, atol=1e-5):
    expected = compile_model(ReferenceTarget(), model).session().run(feeds)
    executable = compile_model(OnnxRuntimeTarget(), model)
    assert executable.plan.whole_on_target
    actual = executable.session().run(feeds)
    for drift in outputs_drift(expected, actual):
        assert drift.cosine >= 0.99999
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return executable


def test_onnxruntime_matches_reference_on_resnet50():
    model = load_model(ZOO["onnx-light-resnet50"].file)
    executable = _assert_matches_reference(model, seeded_inputs(model))
    changes = {c.reason for c in executable.record.changes}
    assert "onnxruntime 'all' graph optimizations: BatchNormalization 53 -> 0" in changes


def test_onnxruntime_matches_reference_on_a_bert_style_graph(tmp_path):
    path = tmp_path / "bert.onnx"
    onnx.save(build_bert_like(opset=14, layers=2), path)
    _assert_matches_reference(load_model(path), bert_like_feeds(batch=2, seq=16))


def _job(tmp_path: Path, target: str) -> TargetJob:
    path = _chain(tmp_path)
    return TargetJob(target, {}, path, seeded_inputs(load_model(path)))


def test_isolated_run_returns_outputs_and_the_compile_record(tmp_path):
    result = run_isolated(_job(tmp_path, "onnxruntime"), timeout_s=120)
    assert result.ok and result.outputs[0].shape == (2, 3)
    assert result.compile_record["pass"] == "compile:onnxruntime"


def test_a_crashing_target_fails_its_job_with_the_reason(tmp_path):
    result = run_isolated(_job(tmp_path, "fake_targets:CrashingTarget"), timeout_s=120)
    assert not result.ok and result.error == "crashed (signal SIGSEGV)"


def test_a_hanging_target_times_out(tmp_path):
    result = run_isolated(_job(tmp_path, "fake_targets:HangingTarget"), timeout_s=3)
    assert not result.ok and result.error == "timed out after 3 s"


def test_run_writes_outputs_and_compares(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", str(_chain(tmp_path)), "--target", "onnxruntime{threads=1}"]
    assert main([*args, "--compare", "reference", "--output-dir", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [run["target"] for run in doc["runs"]] == ["onnxruntime", "reference"]
    assert doc["outputs"][0]["file"] == str(out / "output_0.npy")
    assert np.load(out / "output_0.npy").shape == (2, 3)
    drift = doc["compare"]["drift"][0]
    assert drift["max_abs"] < 1e-5 and drift["cosine"] > 0.99999
    assert doc["runs"][0]["compile_record"]["config"]["threads"] == 1


def test_run_carries_on_after_a_crash(tmp_path, capsys):
    args = ["run", str(_chain(tmp_path)), "--target", "fake_targets:CrashingTarget"]
    assert main([*args, "--compare", "reference", "--output-dir", str(tmp_path / "o")]) == 1
    text = capsys.readouterr().out
    assert "FAILED: crashed (signal SIGSEGV)" in text
    assert "reference" in text and not (tmp_path / "o").exists()


def test_run_with_given_inputs(tmp_path, capsys):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.save(tmp_path / "x.npy", x)
    args = [
        "run",
        str(_chain(tmp_path)),
        "--target",
        "reference",
        "--input",
        f"x={tmp_path / 'x.npy'}",
    ]
    assert main([*args, "--output-dir", str(tmp_path / "o"), "--json"]) == 0
    expected = (
        compile_model(ReferenceTarget(), load_model(_chain(tmp_path))).session().run({"x": x})
    )
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "output_0.npy"), expected[0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "nope"], "unknown target 'nope'"),
        (["--target", "onnxruntime{threads=many}"], "target 'onnxruntime': option threads=many"),
        (["--target", "onnxruntime", "--input", "q=a.npy"], "--input q=a.npy: no such file"),
        (["--target", "onnxruntime", "--input", "x=BAD"], "bad.npy: shape [3] does not match"),
        (["--target", "onnxruntime", "--input", "z=GOOD"], "good.npy: the model has no input 'z'"),
    ],
)
def test_run_bad_arguments_are_one_line_errors(tmp_path, capsys, extra, message):
    np.save(tmp_path / "bad.npy", np.zeros(3, np.float32))
    np.save(tmp_path / "good.npy", np.zeros((2, 4), np.float32))
    extra = [
        e.replace("BAD", str(tmp_path / "bad.npy")).replace("GOOD", str(tmp_path / "good.npy"))
        for e in extra
    ]
    args = ["run", str(_chain(tmp_path)), *extra, "--output-dir", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def _bf16_matmul(tmp_path: Path, w: np.ndarray) -> oir.Model:
    """x @ w through the bf16 pipeline: a bfloat16 MatMul between two Casts."""
    model = load_model(save_matmul(tmp_path / "matmul.onnx", 4, w))
    run_pipeline(model, parse_pipeline("bf16"))
    return model


def test_reference_target_runs_a_bf16_pipeline_by_emulation(tmp_path):
    """onnxruntime's CPU build has no bfloat16 MatMul: the reference target runs the bf16
    pipeline's output emulated, by the numeric check's own path (`run_reference`)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    model = _bf16_matmul(tmp_path, w)
    assert needs_emulation(model)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    executable = compile_model(ReferenceTarget(), model)
    (y,) = executable.session().run({"x": x})
    np.testing.assert_array_equal(y, run_reference(model, {"x": x})[0])
    np.testing.assert_allclose(y, x @ w, rtol=0.05, atol=0.05)  # bfloat16 keeps 8 bits
    assert not np.array_equal(y, x @ w)  # rounded, not run in FP32
    (segment,) = executable.record.extra["segments"]
    assert segment["precision"] == (
        "bfloat16 emulated: FP32 arithmetic on values rounded to bfloat16"
    )
    assert executable.plan.node_coverage == 1.0


def test_onnxruntime_bf16_model_is_refused_naming_the_node_not_its_loader(tmp_path):
    """The bf16 MatMul has no onnxruntime kernel and bf16 cannot cross into a fallback
    segment: refused before compiling, naming the node, not onnxruntime's load failure."""
    model = _bf16_matmul(tmp_path, np.ones((16, 8), np.float32))
    with pytest.raises(
        AsicperfError,
        match=r"cannot run node n\d+ .*\(MatMul\) \(MatMul has no "
        r"onnxruntime CPU kernel for T=tensor\(bfloat16\)\).*cannot fall back",
    ):
        compile_model(OnnxRuntimeTarget(), model)


def test_targets_list_and_info(capsys):
    assert main(["targets", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["onnxruntime"]["available"] and rows["onnxruntime"]["version"]
    for key in ("name", "available", "why_not", "version", "device", "source"):
        assert key in rows["reference"]
    assert main(["targets", "info", "onnxruntime", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "Conv" in info["ops"] and "com.microsoft.FusedConv" in info["ops"]
    assert info["options"] == {"threads": 0, "optimization": "all", "provider": "cpu"}
    assert main(["targets", "info", "nope"]) == 2
