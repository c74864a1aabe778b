"""The tvm target's per-layer profile: fused function names read as Relax ops, the lowered
model's nodes traced back to the compiled model's ids, calls mapped to nodes by their ops and
the data they read (branches that run out of graph order, layout changes passed through, the
mapping stopping at the first call it cannot explain), and TVM profiles of an MLP, the small
ResNet and the BERT-like encoder with exact node ids per layer."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest
from bert_like import bert_like_feeds, build_bert_like, load
from onnx import TensorProto, helper
from small_models import mlp, onnx_model, small_resnet

from ir.seeded_inputs import seeded_inputs
from targets.profiling import TargetProfile, profiler_of
from targets.tvm_compiler import lower
from targets.tvm_profile import LoweredNode, function_ops, lowered_nodes, map_calls, profile_tvm
from targets.tvm_schedules.profile import CalledFunction, ProfiledRun

RUNS = 3
_TVM = pytest.mark.skipif(importlib.util.find_spec("tvm") is None, reason="tvm is not installed")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test compiles into its own cache, never the user's."""
    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("function", "ops"),
    [
        ("fused_conv2d1_add1_add2_relu1_prepacked", ("conv2d", "add", "add", "relu")),
        ("max_pool2d", ("max_pool2d",)),
        ("fast_softmax", ("softmax",)),
        ("fused_matmul2_add5_divide1_fast_erf_add6", ("matmul", "add", "divide", "erf", "add")),
        ("fused_expand_dims_expand_dims1_cast", ("expand_dims", "expand_dims", "cast")),
        ("tir_sigmoid", ("sigmoid",)),
        ("fused_fast_softmax_tir_sin", ("softmax", "sin")),  # sin: no ONNX op converts to it
    ],
)
def test_function_names_read_as_relax_ops(function: str, ops: tuple[str, ...]) -> None:
    assert function_ops(function) == ops


def test_lowered_nodes_trace_folded_batchnorms_to_the_compiled_ids(tmp_path: Path) -> None:
    """Compiled as loaded, the lowering's Conv n15 stands for the Conv n0 and BatchNorm n1 it
    replaced; compiled after `prepare` (the lowered model itself), every id is its own."""
    model = load(small_resnet(), tmp_path)
    lowered, lowering = lower(model)
    nodes = lowered_nodes(lowered, lowering.records, model)
    assert [(n.id, n.op_type, n.compiled_ids) for n in nodes[:4]] == [
        ("n15", "Conv", ("n0", "n1")),
        ("n2", "Relu", ("n2",)),
        ("n3", "MaxPool", ("n3",)),
        ("n16", "Conv", ("n4", "n5")),
    ]
    assert nodes[0].input_count == 3  # the folded BatchNorm's shift is the Conv's bias
    prepared = lowered_nodes(lowered, lowering.records, lowered)
    assert [n.compiled_ids for n in prepared[:2]] == [("n15",), ("n2",)]


def _node(id_: str, op: str, reads: tuple[str, ...], writes: str, inputs: int = 2) -> LoweredNode:
    return LoweredNode(id_, op, reads, (writes,), inputs, (id_,), folded=False)


def _run(*calls: tuple[str, tuple[int, ...]], seconds: float = 1.0) -> ProfiledRun:
    """Calls of 1 ms each: (function, tensor addresses with the output last)."""
    return ProfiledRun(seconds, tuple(CalledFunction(f, 1e-3, t) for f, t in calls))


# Two inputs (x at address 1, z at 2), each through its own MatMul+Add, then their sum.
_BRANCHES = (
    _node("n0", "MatMul", ("x",), "xm"),
    _node("n1", "Add", ("xm",), "xa"),
    _node("n2", "MatMul", ("z",), "zm"),
    _node("n3", "Add", ("zm",), "za"),
    _node("n4", "Add", ("xa", "za"), "y"),
)


def test_calls_out_of_graph_order_map_by_the_data_they_read() -> None:
    """z's branch runs first: the first call reads z (address 2), so it is n2 and n3 although
    x's identical branch comes first in the graph."""
    run = _run(
        ("fused_matmul_add", (2, 90, 10)),
        ("fused_matmul_add", (1, 90, 11)),
        ("add1", (11, 10, 12)),
    )
    mapped = map_calls(_BRANCHES, ("x", "z"), (1, 2), run)
    assert mapped == [("n2", "n3"), ("n0", "n1"), ("n4",)]


def test_a_call_that_reads_the_wrong_data_stops_the_mapping() -> None:
    """The sum reads the first branch's output twice (address 10, not 11): no node fits."""
    run = _run(
        ("fused_matmul_add", (2, 90, 10)),
        ("fused_matmul_add", (1, 90, 11)),
        ("add1", (10, 10, 12)),
    )
    assert map_calls(_BRANCHES, ("x", "z"), (1, 2), run) == [("n2", "n3"), ("n0", "n1"), ()]


def test_layout_changes_pass_through_and_views_need_no_call() -> None:
    """NHWC around the Conv (two transposes no node asked for); the Flatten is a view."""
    nodes = (
        _node("n0", "Conv", ("x",), "c", inputs=3),
        _node("n1", "Relu", ("c",), "r"),
        _node("n2", "Flatten", ("r",), "f", inputs=1),
        _node("n3", "Softmax", ("f",), "y", inputs=1),
    )
    run = _run(
        ("transpose", (1, 10)),
        ("fused_conv2d_add_relu_prepacked", (10, 90, 91, 11)),
        ("transpose1", (11, 12)),
        ("fast_softmax", (12, 13)),
    )
    assert map_calls(nodes, ("x",), (1,), run) == [(), ("n0", "n1"), (), ("n3",)]


def test_a_variadic_sum_runs_in_the_calls_that_broadcast_its_inputs() -> None:
    """ResNet-50's residual Sum: each input's broadcast is fused into the convolution that
    computes it, then the broadcasts are stacked and summed."""
    nodes = (
        _node("n0", "Conv", ("x",), "a", inputs=3),
        _node("n1", "Conv", ("x",), "b", inputs=3),
        _node("n2", "Sum", ("a", "b"), "y"),
    )
    run = _run(
        ("fused_conv2d3_add2_broadcast_to", (1, 90, 91, 10)),
        ("fused_conv2d3_add2_broadcast_to", (1, 92, 93, 11)),
        ("fused_stack_sum", (10, 11, 12)),
    )
    assert map_calls(nodes, ("x",), (1,), run) == [("n0", "n2"), ("n1", "n2"), ("n2",)]


def test_the_mapping_stops_at_the_first_call_it_cannot_explain() -> None:
    """`sin` is no op of the table: that call and every later one stay unmapped, though the
    last MatMul would fit (its input came from a call that was not explained)."""
    nodes = (
        _node("n0", "MatMul", ("x",), "m"),
        _node("n1", "Softmax", ("m",), "s", inputs=1),
        _node("n2", "Sin", ("s",), "t", inputs=1),
        _node("n3", "MatMul", ("t",), "y"),
    )
    run = _run(
        ("matmul", (1, 90, 10)),
        ("fused_fast_softmax_tir_sin", (10, 11)),
        ("matmul1", (11, 91, 12)),
    )
    assert map_calls(nodes, ("x",), (1,), run) == [("n0",), (), ()]


class _RecordedSession:
    """A session that replays recorded runs (the first is the warm-up)."""

    lowered = (_node("n0", "MatMul", ("x",), "m"), _node("n1", "Relu", ("m",), "y", inputs=1))
    input_names = ("x",)

    def profile_runs(
        self, feeds: Mapping[str, np.ndarray], runs: int
    ) -> tuple[tuple[int, ...], list[ProfiledRun]]:
        assert runs == 3

        def run(ms: float, seconds: float) -> ProfiledRun:
            calls = [
                CalledFunction("shape_func", 1e-4, (50,)),
                CalledFunction("matmul", ms * 1e-3, (1, 90, 10)),
                CalledFunction("matmul", ms * 2e-3, (10, 90, 11)),
                CalledFunction("relu", 5e-4, (11, 12)),
            ]
            return ProfiledRun(seconds, tuple(calls))

        return (1,), [run(9.0, 0.05), run(1.0, 0.004), run(2.0, 0.007)]


def test_a_layer_per_call_site_with_its_time_in_each_run() -> None:
    """A function called twice is two layers (`#1`, `#2`); the warm-up is left out; the VM's
    shape function keeps its time with no nodes; the second MatMul reads the first one's
    output, which the graph's next node (Relu) does not, so the mapping stops there."""
    profile = profile_tvm(_RecordedSession(), {}, runs=2)  # type: ignore[arg-type]
    assert [(layer.name, layer.kind, layer.nodes, layer.times_ms) for layer in profile.layers] == [
        ("shape_func", "shape_func", (), (0.1, 0.1)),
        ("matmul#1", "matmul", ("n0",), (1.0, 2.0)),
        ("matmul#2", "matmul", (), (2.0, 4.0)),
        ("relu", "relu", (), (0.5, 0.5)),
    ]
    assert profile.end_to_end_ms == (4.0, 7.0)


def _profile(
    model_proto: onnx.ModelProto, folder: Path, feeds: dict | None = None, winograd: bool = True
) -> TargetProfile:
    from targets.tvm_target import TvmConfig, TvmTarget

    target = TvmTarget()
    assert profiler_of(target) is target
    model = load(model_proto, folder)
    compiled = target.compile(model, TvmConfig(winograd=winograd))
    bound = feeds if feeds is not None else seeded_inputs(model, bindings={"batch": 2})
    return target.profile(compiled, 1, bound, RUNS)


def _layers(profile: TargetProfile) -> list[tuple[str, tuple[str, ...]]]:
    return [(layer.kind, layer.nodes) for layer in profile.layers]


def _check_runs(profile: TargetProfile) -> None:
    """Every run reported, every layer (mapped or not) took time, and no run's layers outlast
    the run."""
    assert len(profile.end_to_end_ms) == RUNS
    assert all(len(layer.times_ms) == RUNS for layer in profile.layers)
    assert all(sum(layer.times_ms) > 0 for layer in profile.layers)
    for run in range(RUNS):
        assert sum(layer.times_ms[run] for layer in profile.layers) <= profile.end_to_end_ms[run]


@_TVM
def test_mlp_layers_are_the_fused_matmuls(tmp_path: Path) -> None:
    """The symbolic batch dim costs a shape function per run: kept, with no nodes."""
    profile = _profile(mlp(), tmp_path)
    assert _layers(profile) == [
        ("shape_func", ()),
        ("fused_matmul_add_relu", ("n0", "n1", "n2")),
        ("fused_matmul_add", ("n3", "n4")),
        ("fast_softmax", ("n5",)),
    ]
    _check_runs(profile)


@_TVM
def test_small_resnet_layers_cover_the_folded_batchnorms(tmp_path: Path) -> None:
    """Direct convolutions (`winograd=false`): Conv+BN+Relu is one call, the residual Add and
    Relu run in the second convolution of the block; the NHWC layout change keeps its time with
    no nodes; Flatten is a view. Through `compile_model` (which lowers in `prepare`) the ids are
    the lowered model's."""
    from targets.executable import compile_model
    from targets.tvm_target import TvmConfig, TvmTarget

    profile = _profile(small_resnet(), tmp_path, winograd=False)
    assert _layers(profile) == [
        ("transpose", ()),
        ("fused_conv2d_add_relu", ("n0", "n1", "n2")),
        ("max_pool2d", ("n3",)),
        ("fused_conv2d_add_relu", ("n4", "n5", "n6")),
        ("fused_conv2d_add_add_relu", ("n7", "n8", "n9", "n10")),
        ("mean", ("n11",)),
        ("fused_matmul_add", ("n13",)),
        ("fast_softmax", ("n14",)),
    ]
    _check_runs(profile)
    target = TvmTarget()
    model = load(small_resnet(), tmp_path)
    # the same library: a cache hit
    compiled = compile_model(target, model, TvmConfig(winograd=False)).pieces[0][1]
    prepared = target.profile(compiled, 1, seeded_inputs(model), RUNS)
    assert [layer.nodes for layer in prepared.layers][1:5] == [
        ("n15", "n2"),
        ("n3",),
        ("n16", "n6"),
        ("n17", "n9", "n10"),
    ]


@_TVM
def test_winograd_steps_map_to_the_convolution_they_compute(tmp_path: Path) -> None:
    """The block's 3x3 convolutions run as Winograd's three calls, all mapped to the Conv (and
    its folded BatchNorm), so they are one layer (its work counted once, at the 16/36 of the
    multiply-adds the algorithm does); the bias, the residual Add and the Relu folded into the
    output transform map there. The stem (3 input channels) stays direct."""
    profile = _profile(small_resnet(), tmp_path)
    assert _layers(profile) == [
        ("transpose", ()),
        ("fused_conv2d_add_relu", ("n0", "n1", "n2")),
        ("max_pool2d", ("n3",)),
        ("winograd_input+matmul+winograd_output_add_relu", ("n4", "n5", "n6")),
        ("winograd_input+matmul+winograd_output_add_add_relu", ("n7", "n8", "n9", "n10")),
        ("mean", ("n11",)),
        ("fused_matmul_add", ("n13",)),
        ("fast_softmax", ("n14",)),
    ]
    winograd = profile.layers[3]
    assert winograd.detail["algorithm"] == "Winograd F(2x2, 3x3)"
    assert float(winograd.detail["flop_scale"]) == pytest.approx(16 / 36, rel=1e-5)
    assert "flop_scale" not in profile.layers[1].detail
    _check_runs(profile)


@_TVM
def test_time_after_an_unknown_op_stays_unmapped(tmp_path: Path) -> None:
    """TVM fuses Sin into the softmax's function: from there on no call has nodes, and none
    loses its time."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((8, 8), dtype=np.float32),
        "w2": rng.standard_normal((8, 4), dtype=np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m"]),
        helper.make_node("Softmax", ["m"], ["s"]),
        helper.make_node("Sin", ["s"], ["t"]),
        helper.make_node("MatMul", ["t", "w2"], ["y"]),
    ]
    proto = onnx_model(nodes, {"x": (TensorProto.FLOAT, [2, 8])}, ["y"], weights)
    profile = _profile(proto, tmp_path)
    assert _layers(profile) == [
        ("matmul", ("n0",)),
        ("fused_fast_softmax_tir_sin", ()),
        ("matmul", ()),
    ]
    _check_runs(profile)


@_TVM
@pytest.mark.slow
def test_bert_like_branches_map_although_they_run_out_of_graph_order(tmp_path: Path) -> None:
    """V's projection runs after the attention scores, the mask's Unsqueeze/Cast/Sub/Mul in
    the scores' function; K's head split and its transpose for the scores are one call."""
    profile = _profile(build_bert_like(layers=1, batch=2), tmp_path, bert_like_feeds())
    by_name = {layer.name: layer.nodes for layer in profile.layers}
    assert all(layer.nodes for layer in profile.layers)
    assert by_name["fused_matmul_add2_prepacked#3"] == ("n43", "n44")
    assert by_name["fused_reshape_transpose_transpose1"] == ("n41", "n42", "n54")
    assert sorted(by_name["layer_norm#1"]) == sorted(f"n{i}" for i in range(7, 16))
    scores = next(layer for layer in profile.layers if layer.name.startswith("fused_expand_dims"))
    assert set(scores.nodes) == {"n16", "n17", "n18", "n19", "n20", "n55", "n56", "n57"}
    _check_runs(profile)
