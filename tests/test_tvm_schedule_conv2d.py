"""The conv2d schedule rule: which plan it picks for which convolution, that its schedules compute
what the unscheduled functions do, and what it declines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from targets.tvm_schedules.conv2d import Conv2dRule, ConvShape, choose_plan
from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import Scheduled
from tests.tvm_schedule_helpers import TUNING


def _shape(batch: int, size: int, channels: int, filters: int, kernel: int) -> ConvShape:
    weight_bytes = kernel * kernel * channels * filters * 4
    return ConvShape(batch, size, size, filters, kernel, kernel, channels, weight_bytes, 1, filters)


def test_small_weights_make_row_tasks_with_a_full_register_tile() -> None:
    plan = choose_plan(_shape(1, 56, 64, 64, 3), TUNING)
    # 14 pixels x 2 vectors = 28 accumulators + 2 weight vectors + 1 broadcast <= 32 registers.
    assert (plan.pixels, plan.vectors, plan.lanes) == (14, 2, 16)
    assert not plan.weights_outer
    # a row of every output channel per task: each pixel tile's input serves both channel tiles
    assert plan.rows_per_task == 1 and plan.channel_parts == 1 and plan.tasks == 56


def test_register_tile_divides_the_row_so_no_tile_is_partial() -> None:
    # 7 pixels a row: 7 x 2 vectors (14 accumulators, no partial tile), not 6 x 4 (24, but a
    # partial tile whose predicate keeps every accumulator of the kernel out of registers).
    plan = choose_plan(_shape(1, 7, 512, 512, 3), TUNING)
    assert (plan.pixels, plan.vectors) == (7, 2)
    # 28 pixels a row: two tiles of 14; 9 pixels: one tile of 9 x 3 vectors of 8 lanes.
    assert choose_plan(_shape(1, 28, 128, 128, 3), TUNING).pixels == 14
    assert (choose_plan(_shape(1, 9, 5, 24, 3), TUNING).pixels) == 9


def test_input_pixels_in_one_l1_set_keep_the_tile_within_its_ways() -> None:
    # 1x1 over 1024 channels: input pixels 4 KiB apart, all in one set of a 32 KiB 8-way L1.
    zen4 = replace(TUNING, l1_bytes=32 << 10, l1_ways=8, l2_bytes=1 << 20)
    aliased = replace(_shape(1, 14, 1024, 256, 1), pixel_pitch=1024 * 4)
    plan = choose_plan(aliased, zen4)
    assert plan.pixels < zen4.l1_ways and plan.pixels * plan.vectors >= 14
    # 256 channels (1 KiB apart) spread over four sets: the full 14-pixel tile
    spread = replace(_shape(1, 14, 256, 256, 1), pixel_pitch=256 * 4)
    assert choose_plan(spread, zen4).pixels == 14


def test_large_weights_split_the_channels_between_the_cores() -> None:
    plan = choose_plan(_shape(1, 7, 512, 512, 3), TUNING)  # 9.4 MB of weights
    assert plan.weights_outer
    assert plan.channel_parts == TUNING.cores and plan.tasks == TUNING.cores
    assert plan.rows_per_task == 7  # the whole image: each weight is read once
    batched = choose_plan(_shape(8, 7, 512, 512, 3), TUNING)
    assert batched.rows_per_task == 56 and batched.tasks == TUNING.cores


def test_narrow_vectors_and_odd_extents() -> None:
    plan = choose_plan(_shape(1, 9, 5, 24, 3), TUNING)
    assert plan.lanes == 8 and plan.vectors == 3  # 24 channels: three 8-lane vectors
    assert plan.pixels <= 9 * plan.rows_per_task
    avx2 = choose_plan(_shape(1, 56, 64, 64, 3), replace(TUNING, vector_bits=256))
    assert avx2.lanes == 8 and avx2.pixels * avx2.vectors + avx2.vectors + 1 <= 16


def test_small_outputs_still_fill_the_registers_and_the_cores() -> None:
    # A classifier as a 1x1 conv on a 1x1 image: the accumulators spread along the channels.
    head = choose_plan(_shape(1, 1, 1024, 1000, 1), TUNING)
    assert (head.pixels, head.vectors, head.lanes) == (1, 5, 8)
    # 13x13 with one channel tile: one row per task rather than one task for all.
    narrow = choose_plan(_shape(1, 13, 128, 32, 3), TUNING)
    assert narrow.tasks >= TUNING.cores
    # 288 channels over two cores: 3-vector tiles (6 of them), not 2-vector ones (9).
    odd = choose_plan(_shape(1, 13, 144, 288, 3), replace(TUNING, l2_bytes=1 << 20))
    assert odd.weights_outer and odd.vectors == 3 and odd.channel_parts == 2


tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")

from tests.tvm_schedule_helpers import (  # noqa: E402
    assert_declines,
    only_function,
    schedule_and_check,
    trace,
)


def _conv_model(
    batch: int,
    channels: int,
    size: int,
    filters: int,
    kernel: int,
    *,
    stride: int = 1,
    pad: int = 0,
    dilation: int = 1,
    residual: bool = False,
    groups: int = 1,
) -> str:
    """Conv (weights and bias as inputs), an optional residual Add, then Relu."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    output = f"float[{batch}, {filters}, {out}, {out}]"
    extra = f", {output} r" if residual else ""
    tail = "s = Add(c, r) y = Relu(s)" if residual else "y = Relu(c)"
    return f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[{batch}, {channels}, {size}, {size}] x,
   float[{filters}, {channels // groups}, {kernel}, {kernel}] w,
   float[{filters}] b{extra}) => ({output} y) {{
    c = Conv<kernel_shape=[{kernel}, {kernel}], strides=[{stride}, {stride}],
             pads=[{pad}, {pad}, {pad}, {pad}], dilations=[{dilation}, {dilation}],
             group={groups}>(x, w, b)
    {tail}
}}"""


def _scheduled(func: Any, tuning: CpuTuning = TUNING) -> Scheduled:
    """Scheduled, computing what `func` does, with the loops parallel, vectorized, unrolled and
    the reduction's initialization split off."""
    outcome = schedule_and_check(Conv2dRule(), func, tuning)
    applied = trace(outcome)
    for primitive in ("parallel", "vectorize", "unroll", "decompose_reduction"):
        assert primitive in applied
    return outcome


def test_3x3_with_padding_bias_and_relu() -> None:
    func = only_function(_conv_model(1, 8, 12, 64, 3, pad=1), "fused_conv2d")
    outcome = _scheduled(func)
    assert "3x3 conv" in outcome.detail and "padding a separate copy" in outcome.detail
    assert "compute" in outcome.detail  # the ReLU is fused


def test_1x1_stride_2_with_a_residual_over_a_batch() -> None:
    model = _conv_model(2, 16, 14, 32, 1, stride=2, residual=True)
    func = only_function(model, "fused_conv2d")
    outcome = _scheduled(func)
    assert "padding inlined" in outcome.detail


def test_tasks_of_part_of_an_image_over_a_batch() -> None:
    # Each task writes a few rows of one image: the fused epilogue must cover exactly those,
    # not the rows of the other image that other tasks are still computing.
    func = only_function(_conv_model(2, 32, 20, 64, 1), "fused_conv2d")
    outcome = _scheduled(func)
    assert "tasks of 1 rows x 64 channels" in outcome.detail


def test_7x7_stride_2_stem_with_three_input_channels() -> None:
    func = only_function(_conv_model(1, 3, 22, 32, 7, stride=2, pad=3), "fused_conv2d")
    outcome = _scheduled(func)
    assert "C=3" in outcome.detail


def test_extents_no_tile_divides() -> None:
    # 9x9 outputs (partial pixel tiles), 24 channels (8-lane vectors), 5 input channels.
    func = only_function(_conv_model(1, 5, 9, 24, 3, pad=1), "fused_conv2d")
    outcome = _scheduled(func)
    assert "3x8 channels" in outcome.detail


def test_dilated_with_channels_fewer_than_a_vector() -> None:
    func = only_function(_conv_model(1, 4, 11, 5, 3, pad=2, dilation=2), "fused_conv2d")
    outcome = _scheduled(func)
    assert "x 5x1 channels" in outcome.detail  # no vector width divides 5 channels: scalars


def test_weights_beyond_l2_split_the_output_channels() -> None:
    small_l2 = replace(TUNING, l2_bytes=64 * 1024)  # 3x3x32x64 weights: 72 KiB
    model = _conv_model(2, 32, 7, 64, 3, pad=1)
    func = only_function(model, "fused_conv2d")
    outcome = _scheduled(func, small_l2)
    assert "weights outer" in outcome.detail


def test_grouped_and_depthwise() -> None:
    for groups, channels, filters in ((2, 32, 64), (32, 32, 32)):
        model = _conv_model(1, channels, 10, filters, 3, pad=1, groups=groups)
        func = only_function(model, "fused_conv2d")
        outcome = _scheduled(func)
        assert f"in {groups} groups" in outcome.detail


def test_declines_other_layouts_dtypes_dynamic_shapes_and_non_convolutions() -> None:
    from tvm import te, topi

    def conv(layout: str, batch: Any, dtype: str) -> Any:
        nchw = layout == "NCHW"
        data = te.placeholder((batch, 8, 10, 10) if nchw else (batch, 10, 10, 8), dtype, "x")
        weight = te.placeholder((16, 8, 3, 3) if nchw else (3, 3, 8, 16), dtype, "w")
        out = (topi.nn.conv2d_nchw if nchw else topi.nn.conv2d_nhwc)(data, weight, 1, 1, 1)
        return te.create_prim_func([data, weight, out])

    matmul = """<ir_version: 8, opset_import: ["" : 17]>
g (float[8, 64] x, float[64, 32] w) => (float[8, 32] y) { y = MatMul(x, w) }"""
    for func, reason in (
        (conv("NCHW", 1, "float32"), "HWIO"),
        (conv("NHWC", 1, "float16"), "dtype float16"),
        (conv("NHWC", te.var("n"), "float32"), "dynamic extent n"),
        (only_function(matmul, "matmul"), "SSSSRRR"),
    ):
        assert_declines(Conv2dRule(), func, reason)
