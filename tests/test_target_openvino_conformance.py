"""The `openvino` target on ONNX's node tests: each rule of `OPENVINO_KNOWN_FAILURES` withdraws
the node form ONNX's cases showed failing (so it falls back to the reference path) and leaves
the neighbouring form that passes claimed; the conformance page with two option sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper
from small_models import onnx_model

from ir.errors import AsicperfError
from ir.model_io import load_model
from targets.conformance import failing_ops, run_node_tests
from targets.conformance.__main__ import main
from targets.conformance.backend import claims_gap, load_proto
from targets.conformance.document import json_path
from targets.conformance.node_tests import Status, node_cases
from targets.executable import compile_model
from targets.known_failures import known_failure
from targets.openvino_known_failures import OPENVINO_KNOWN_FAILURES

pytest.importorskip("openvino", reason="openvino is not installed (asicperf[openvino])")

from targets.openvino_runtime import core, openvino_message
from targets.openvino_target import OpenVinoConfig, OpenVinoTarget

F32 = "openvino{precision=f32 cache=false}"
_CASES = {case.case.name: case.case for case in node_cases()}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path / "cache"))


def _gap(case_name: str) -> str | None:
    """Why the target does not claim ONNX's case, as the conformance run says it."""
    return claims_gap(OpenVinoTarget(), load_proto(_CASES[case_name].model))


# (failing case, the rule's reason, a neighbouring case that passes and stays claimed or None)
RULE_CASES = [
    (
        "test_attention_local_window",
        "OpenVINO's ONNX frontend ignores Attention's left_window_size/right_window_size",
        "test_attention_local_window_default",
    ),
    (
        "test_attention_4d_with_past_and_present_qk_matmul_bias_3d_mask_causal",
        "OpenVINO aligns Attention's causal mask with past keys to the last key, not past length",
        "test_attention_4d_causal_with_past_and_present",
    ),
    (
        "test_bernoulli_seed",
        "OpenVINO's Bernoulli draws other numbers than ONNX's for the same seed",
        None,
    ),
    (
        "test_bitshift_right_int8_negative_input",
        "OpenVINO's ONNX frontend shifts signed integers as a multiply or divide by 2^n",
        "test_bitshift_right_uint8",
    ),
    (
        "test_dft",
        "OpenVINO's float32 DFT misses ONNX's atol where exact zeros are expected",
        None,
    ),
    (
        "test_dropout_default",
        "OpenVINO's ONNX frontend renames a graph input read by Dropout after Dropout's output",
        None,
    ),
    (
        "test_dynamicquantizelinear",
        "OpenVINO's CPU DynamicQuantizeLinear rounds x / y_scale one step off at ties",
        None,
    ),
    (
        "test_gru_batchwise",
        "OpenVINO's ONNX frontend ignores GRU's layout=1 (batch first)",
        "test_gru_defaults",
    ),
    (
        "test_lstm_batchwise",
        "OpenVINO's ONNX frontend ignores LSTM's layout=1 (batch first)",
        "test_lstm_defaults",
    ),
    (
        "test_lstm_with_peepholes",
        "OpenVINO's ONNX frontend drops LSTM's peephole input P",
        "test_lstm_with_initial_bias",
    ),
    (
        "test_simple_rnn_batchwise",
        "OpenVINO's ONNX frontend ignores RNN's layout=1 (batch first)",
        "test_simple_rnn_defaults",
    ),
    (
        "test_maxpool_2d_ceil_output_size_reduce_by_one",
        "OpenVINO's MaxPool keeps a ceil_mode window that starts past the input",
        "test_maxpool_2d_ceil",
    ),
    (
        "test_nonmaxsuppression_iou_threshold_boundary",
        "OpenVINO's NonMaxSuppression also suppresses boxes whose IoU equals iou_threshold",
        None,
    ),
    (
        "test_quantizelinear_uint16",
        "OpenVINO's CPU QuantizeLinear to uint16 rounds halves toward zero, not to even",
        "test_quantizelinear_int16",
    ),
    (
        "test_reduce_max_empty_set",
        "OpenVINO's ReduceMax over an empty axis gives -FLT_MAX, not -inf",
        "test_reduce_max_empty_set_bool",
    ),
    (
        "test_resize_downsample_scales_linear_antialias",
        "OpenVINO's Resize ignores antialias",
        "test_resize_downsample_scales_linear",
    ),
    (
        "test_resize_upsample_scales_cubic_A_n0p5_exclude_outside",
        "OpenVINO's Resize ignores exclude_outside",
        "test_resize_upsample_scales_cubic",
    ),
    (
        "test_resize_upsample_sizes_nearest_not_larger",
        "OpenVINO's Resize ignores keep_aspect_ratio_policy",
        "test_resize_upsample_sizes_nearest_axes_2_3",
    ),
    (
        "test_resize_downsample_scales_linear_align_corners",
        "OpenVINO's Resize maps align_corners with the unrounded input length * scale",
        "test_resize_upsample_sizes_nearest_floor_align_corners",
    ),
    (
        "test_roialign_mode_max",
        "OpenVINO's RoiAlign pools mode=max samples otherwise than ONNX's reference",
        "test_roialign_aligned_false",
    ),
    (
        "test_spacetodepth_crd_mode_example",
        "OpenVINO's ONNX frontend ignores SpaceToDepth's mode=CRD",
        "test_spacetodepth_dcr_mode_example",
    ),
    (
        "test_tile",
        "OpenVINO's CPU Tile returns garbage for run-time repeats on a rank-4+ input",
        "test_tile_precomputed",
    ),
    (
        "test_top_k_same_values",
        "OpenVINO's TopK orders the indices of equal values unstably",
        None,
    ),
]


@pytest.mark.parametrize(
    ("failing", "reason", "neighbour"), RULE_CASES, ids=[c[0] for c in RULE_CASES]
)
def test_each_rule_withdraws_the_failing_form_and_keeps_its_neighbour(
    failing: str, reason: str, neighbour: str | None
) -> None:
    op = _CASES[failing].model.graph.node[0].op_type
    assert _gap(failing) == f"op {op} is not claimed: {reason}"
    if neighbour is not None:
        assert _gap(neighbour) is None


def test_float64_is_not_claimed_the_plugin_computes_it_in_float32() -> None:
    """Not a rule: the dtype check refuses any float64 value (it cannot fall back)."""
    assert _gap("test_cast_FLOAT_to_DOUBLE") == "dtype float64 (of 'output') is not claimed"
    assert _gap("test_castlike_FLOAT_to_FLOAT16") is None


def test_the_table_has_one_rule_per_failure_the_node_tests_showed() -> None:
    assert len(OPENVINO_KNOWN_FAILURES) == len(RULE_CASES)
    assert {rule[2] for rule in OPENVINO_KNOWN_FAILURES} == {case[1] for case in RULE_CASES}


def _load(proto: onnx.ModelProto, tmp_path: Path) -> oir.Model:
    path = tmp_path / "model.onnx"
    onnx.save(proto, path)
    return load_model(path)


def _node(proto: onnx.ModelProto, tmp_path: Path, op_type: str) -> oir.Node:
    return next(node for node in _load(proto, tmp_path).graph if node.op_type == op_type)


def _maxpool(size: int, kernel: int, stride: int, pads: list[int]) -> onnx.ModelProto:
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], kernel_shape=[kernel], strides=[stride], pads=pads, ceil_mode=1
    )
    return onnx_model([node], {"x": (TensorProto.FLOAT, [1, 1, size])}, ["y"], {})


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads", "drops"),
    [
        (2, 1, 2, [0, 0], True),  # ceil gives 2 windows; the second starts at 2, past the input
        (4, 3, 2, [0, 0], False),  # 2 windows, the second starts at 2 and overlaps the input
        (5, 2, 2, [0, 0], False),  # ceil's extra window starts at 4, inside the input
        (5, 2, 2, [1, 1], True),  # 4 windows with padding; the last starts in the end padding
    ],
)
def test_maxpool_ceil_is_withdrawn_only_where_onnx_drops_the_last_window(
    tmp_path: Path, size: int, kernel: int, stride: int, pads: list[int], drops: bool
) -> None:
    node = _node(_maxpool(size, kernel, stride, pads), tmp_path, "MaxPool")
    reason = known_failure(node, OPENVINO_KNOWN_FAILURES)
    assert (reason is not None) == drops


@pytest.mark.parametrize(("scale", "withdrawn"), [(0.5, False), (2.0, False), (0.6, True)])
def test_align_corners_with_constant_scales_is_withdrawn_only_for_fractional_lengths(
    tmp_path: Path, scale: float, withdrawn: bool
) -> None:
    """4 * 0.6 = 2.4: OpenVINO maps coordinates with 2.4 where ONNX uses the 2 it outputs."""
    node = helper.make_node(
        "Resize", ["x", "", "scales"], ["y"], mode="linear",
        coordinate_transformation_mode="align_corners",
    )  # fmt: skip
    scales = np.array([1, 1, scale, scale], dtype=np.float32)
    proto = onnx_model(
        [node], {"x": (TensorProto.FLOAT, [1, 1, 4, 4])}, ["y"], {"scales": scales}, opset=19
    )
    reason = known_failure(_node(proto, tmp_path, "Resize"), OPENVINO_KNOWN_FAILURES)
    assert (reason is not None) == withdrawn


def test_constant_repeats_and_values_only_topk_stay_claimed(tmp_path: Path) -> None:
    repeats = np.array([2, 2, 2, 2], dtype=np.int64)
    tile = helper.make_node("Tile", ["x", "repeats"], ["y"])
    proto = onnx_model(
        [tile], {"x": (TensorProto.FLOAT, [2, 3, 4, 5])}, ["y"], {"repeats": repeats}
    )
    assert known_failure(_node(proto, tmp_path, "Tile"), OPENVINO_KNOWN_FAILURES) is None

    topk = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=1)  # indices unread
    inputs = {"x": (TensorProto.FLOAT, [3, 4])}
    k = np.array([2], dtype=np.int64)
    proto = onnx_model([topk], inputs, ["values"], {"k": k}, opset=11)
    assert known_failure(_node(proto, tmp_path, "TopK"), OPENVINO_KNOWN_FAILURES) is None


def test_attention_with_past_keeps_decode_steps_claimed(tmp_path: Path) -> None:
    """One new key per query, the LLM decode step: ONNX's and OpenVINO's causal masks agree."""
    attention = helper.make_node(
        "Attention", ["q", "k", "v", "", "past_k", "past_v"], ["y", "present_k", "present_v"],
        is_causal=1,
    )  # fmt: skip
    inputs = {
        name: (TensorProto.FLOAT, [1, 2, length, 8])
        for name, length in [("q", "s"), ("k", "s"), ("v", "s"), ("past_k", 3), ("past_v", 3)]
    }
    proto = onnx_model([attention], inputs, ["y", "present_k", "present_v"], {}, opset=23)
    node = _node(proto, tmp_path, "Attention")
    assert known_failure(node, OPENVINO_KNOWN_FAILURES) is None


def _tile_after_relu() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Tile", ["r", "repeats"], ["y"]),
    ]
    inputs = {"x": (TensorProto.FLOAT, [2, 3, 4, 5]), "repeats": (TensorProto.INT64, [4])}
    return onnx_model(nodes, inputs, ["y"], {})


def test_a_withdrawn_tile_runs_on_the_reference_path_and_gives_onnxs_numbers(
    tmp_path: Path,
) -> None:
    """OpenVINO alone fills this Tile's output with garbage; partitioned, Relu stays on it."""
    model = _load(_tile_after_relu(), tmp_path)
    executable = compile_model(OpenVinoTarget(), model, OpenVinoConfig(precision="f32"))
    assert [s.on_target for s in executable.plan.segments] == [True, False]
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5), dtype=np.float32)
    repeats = np.array([2, 2, 2, 2], dtype=np.int64)
    (y,) = executable.session(1).run({"x": x, "repeats": repeats})
    np.testing.assert_array_equal(y, np.tile(np.maximum(x, 0), repeats))


def test_the_session_refuses_an_input_openvino_renamed(tmp_path: Path) -> None:
    """Compiled alone (no claims checked), a Dropout reading the graph input leaves OpenVINO's
    input named after Dropout's output: no feed names it, and running it unset would read
    whatever its buffer holds."""
    dropout = helper.make_node("Dropout", ["x"], ["y"])
    proto = onnx_model([dropout], {"x": (TensorProto.FLOAT, [2, 3])}, ["y"], {})
    target = OpenVinoTarget()
    compiled = target.compile(_load(proto, tmp_path), OpenVinoConfig(precision="f32", cache=False))
    with pytest.raises(AsicperfError, match="no feed for OpenVINO's input 'y'"):
        target.load(compiled, 1).run({"x": np.ones((2, 3), np.float32)})


def test_a_conversion_error_is_reported_by_its_cause_not_the_docs_pointer() -> None:
    error = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:105:\n"
        "Model wasn't fully converted.\nSummary:\n"
        "-- No conversion rule found for operations: util::SequenceAt\n"
        "To facilitate the conversion of unsupported operations, refer to Frontend Extension "
        "documentation: https://docs.openvino.ai/latest/openvino_docs_Extensibility_UG.html \n"
    )
    assert openvino_message(error) == (
        "-- No conversion rule found for operations: util::SequenceAt"
    )


def test_node_cases_of_ops_with_rules_pass_or_fall_back() -> None:
    ops = [("", op) for op in ("Relu", "Tile", "SpaceToDepth", "GRU")]
    report = run_node_tests(F32, ops)
    assert report.failures == ()
    assert failing_ops(report) == frozenset()
    assert report.count(Status.PASS) == 15  # 10 direct, 5 expanded (CRD's body included)
    withdrawn = {r.name for r in report.results if r.status == Status.SKIPPED}
    assert withdrawn == {"test_tile", "test_spacetodepth_crd_mode_example", "test_gru_batchwise"}


_BF16 = "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.skipif(not _BF16, reason="OpenVINO computes in float32 on a CPU without bf16")
def test_two_option_sets_get_a_json_each_and_the_page_explains_the_bf16_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    few = tuple(c for c in node_cases() if c.op == ("", "MatMul") and not c.expanded)
    monkeypatch.setattr("targets.conformance.node_tests.node_cases", lambda: few)
    out = tmp_path / "conformance.md"
    assert main([F32, "openvino{cache=false}", "--out", str(out)]) == 0
    f32 = json.loads(json_path(out, "openvino-precision-f32-cache-false").read_text())
    default = json.loads(json_path(out, "openvino-cache-false").read_text())
    assert (f32["spec"], f32["failing_ops"], f32["precisions"]) == (F32, [], {"float32 (asked)": 7})
    assert default["failing_ops"] == ["MatMul"]
    assert default["precisions"] == {"bfloat16 (target default)": 7}
    page = out.read_text()
    assert "| 7 in float32 (asked) |" in page and "| 7 in bfloat16 (target default) |" in page
    assert (
        "Claimed ops that fail under `openvino{cache=false}` but pass under "
        f"`{F32}` (1): `MatMul`. Under `openvino{{cache=false}}` the target chose bfloat16 "
        "itself (7 cases, 7 of these ops' 7 failing ones)"
    ) in page


@pytest.mark.slow
def test_no_claimed_op_fails_onnxs_node_tests_at_f32() -> None:
    report = run_node_tests(F32)
    assert failing_ops(report) == frozenset()
    assert report.pass_rate > 0.98
