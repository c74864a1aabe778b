"""The targets' per-layer profiling hooks on graphs whose fused groups are known exactly: which
IR nodes each profiled layer executes, every run reported, the layers' sum within each run's
end-to-end time; targets without a profiler have no hook."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from bert_like import bert_like_feeds, build_bert_like, load
from onnx import TensorProto, helper
from small_models import onnx_model, small_resnet

from targets.ort_profile import kernel_times
from targets.profiling import NotProfilable, TargetProfile, profiler_of
from targets.reference_target import ReferenceTarget

RUNS = 3


def _needs(module: str) -> pytest.MarkDecorator:
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"{module} is not installed")


def _conv_relu() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = {"w": rng.standard_normal((8, 3, 3, 3), dtype=np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    return onnx_model(nodes, {"x": (TensorProto.FLOAT, [1, 3, 16, 16])}, ["y"], weights)


def _matmul_add() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((32, 16), dtype=np.float32),
        "b": rng.standard_normal(16, dtype=np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["y"]),
    ]
    return onnx_model(nodes, {"x": (TensorProto.FLOAT, [4, 32])}, ["y"], weights)


def _image(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal(shape, dtype=np.float32)}


def _mapped(profile: TargetProfile) -> dict[tuple[str, ...], str]:
    """The layers that execute IR nodes: their nodes -> their kind."""
    return {layer.nodes: layer.kind for layer in profile.layers if layer.nodes}


def _check_runs(profile: TargetProfile) -> None:
    """Every run reported, mapped layers took time, and no run's layers outlast the run."""
    assert len(profile.end_to_end_ms) == RUNS
    assert all(len(layer.times_ms) == RUNS for layer in profile.layers)
    assert all(sum(layer.times_ms) > 0 for layer in profile.layers if layer.nodes)
    for run in range(RUNS):
        assert sum(layer.times_ms[run] for layer in profile.layers) <= profile.end_to_end_ms[run]


def test_targets_without_a_profiler_have_no_hook() -> None:
    assert profiler_of(ReferenceTarget()) is None


def test_kernel_times_split_a_trace_by_run_and_leave_out_the_warm_up() -> None:
    def kernel(name: str, ts: int, dur: int) -> dict:
        args = {"op_name": "Gemm", "provider": "CPUExecutionProvider"}
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": args}

    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
        kernel("gemm", 10, 50),
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
        kernel("gemm", 210, 40),
        kernel("gemm", 260, 20),  # a second call in the same run adds up
        {"cat": "Node", "name": "gemm_fence_before", "ts": 205, "dur": 3},
        {"cat": "Session", "name": "model_run", "ts": 400, "dur": 100},
        kernel("gemm", 410, 30),
        kernel("late", 420, 5),  # a kernel absent from an earlier run is 0 there
    ]
    assert kernel_times(events, skip=1) == {
        "gemm": ("Gemm", "CPUExecutionProvider", (0.06, 0.03)),
        "late": ("Gemm", "CPUExecutionProvider", (0.0, 0.005)),
    }


def _ort_profile(proto: onnx.ModelProto, feeds: dict, folder: Path) -> TargetProfile:
    from targets.onnxruntime_target import OnnxRuntimeConfig, OnnxRuntimeTarget

    target = OnnxRuntimeTarget()
    assert profiler_of(target) is target
    compiled = target.compile(load(proto, folder), OnnxRuntimeConfig())
    return target.profile(compiled, 1, feeds, RUNS)


@_needs("onnxruntime")
def test_onnxruntime_conv_relu_is_one_layer(tmp_path: Path) -> None:
    """Fused into one kernel (FusedConv, or an NCHWc Conv and its ReorderOutput on CPUs with
    NCHWc kernels: the reorder onnxruntime added executes no IR node)."""
    profile = _ort_profile(_conv_relu(), _image((1, 3, 16, 16)), tmp_path)
    assert _mapped(profile) in ({("n0", "n1"): "Conv"}, {("n0", "n1"): "FusedConv"})
    _check_runs(profile)


@_needs("onnxruntime")
def test_onnxruntime_matmul_add_is_one_gemm(tmp_path: Path) -> None:
    profile = _ort_profile(_matmul_add(), {"x": np.ones((4, 32), np.float32)}, tmp_path)
    assert [(layer.kind, layer.nodes) for layer in profile.layers] == [("Gemm", ("n0", "n1"))]
    _check_runs(profile)


@_needs("onnxruntime")
def test_onnxruntime_resnet_block_maps_every_node(tmp_path: Path) -> None:
    """The residual Add and Relu run in the second convolution of the block."""
    profile = _ort_profile(small_resnet(), _image((1, 3, 32, 32)), tmp_path)
    groups = [layer.nodes for layer in profile.layers if layer.nodes]
    assert groups == [
        ("n0", "n1", "n2"),
        ("n3",),
        ("n4", "n5", "n6"),
        ("n7", "n8", "n9", "n10"),
        ("n11",),
        ("n12",),
        ("n13",),
        ("n14",),
    ]
    _check_runs(profile)


@_needs("onnxruntime")
def test_onnxruntime_attention_block(tmp_path: Path) -> None:
    """onnxruntime's own fusions in a BERT-like layer: the scaled scores MatMul (MatMul, Div),
    the LayerNorms (decomposed: 9 nodes; with the residual Add: 10), the erf GELU (5 nodes), the
    projections as Gemms between Reshapes it adds; K's two Transposes as one."""
    profile = _ort_profile(build_bert_like(layers=1, batch=2), bert_like_feeds(), tmp_path)
    kinds = {layer.nodes: layer.kind for layer in profile.layers}
    assert kinds[("n55", "n56")] == "FusedMatMul"
    assert kinds[tuple(f"n{i}" for i in range(7, 16))] == "LayerNormalization"
    assert kinds[tuple(f"n{i}" for i in range(71, 81))] == "SkipLayerNormalization"
    assert kinds[tuple(f"n{i}" for i in range(83, 88))] == "Gelu"
    assert kinds[("n42", "n54")] == "Transpose"
    assert kinds[("n69", "n70")] == "Gemm"
    assert kinds[("n58",)] == "Softmax"
    _check_runs(profile)


@_needs("openvino")
def test_openvino_conv_bn_relu_is_one_layer(tmp_path: Path) -> None:
    from targets.openvino_target import OpenVinoConfig, OpenVinoTarget

    target = OpenVinoTarget()
    assert profiler_of(target) is target
    model = load(small_resnet(), tmp_path)
    config = target.profiling_config(OpenVinoConfig())
    assert config == OpenVinoConfig(perf_count=True)
    unprofiled = target.compile(model, OpenVinoConfig())
    with pytest.raises(NotProfilable, match="without OpenVINO's performance counters"):
        target.profile(unprofiled, 1, _image((1, 3, 32, 32)), RUNS)
    compiled = target.compile(model, config)
    profile = target.profile(compiled, 1, _image((1, 3, 32, 32)), RUNS)
    stem = next(layer for layer in profile.layers if layer.nodes == ("n0", "n1", "n2"))
    assert stem.kind == "Convolution"
    assert stem.detail["kernel"] and stem.detail["precision"] in ("f32", "bf16")
    assert [layer.nodes for layer in profile.layers if layer.kind == "Convolution"] == [
        ("n0", "n1", "n2"),
        ("n4", "n5", "n6"),
        ("n7", "n8", "n9", "n10"),
    ]
    assert all(layer.nodes == () for layer in profile.layers if layer.kind == "Reorder")
    _check_runs(profile)
