"""The elementwise schedule rule: chains of injective blocks (arithmetic, casts, selects,
gathers, transposes) are inlined into one loop nest, vectorized along the output's innermost
axis (or, for a transpose, tiled so both sides stream), parallel only when the work pays for
the threads; the results match the unscheduled functions, and reductions are declined."""

from __future__ import annotations

import pytest

from targets.tvm_schedules.analysis import vector_width, worth_parallel
from targets.tvm_schedules.elementwise import ElementwiseRule
from targets.tvm_schedules.rule import Scheduled
from tests.tvm_schedule_helpers import (
    TUNING,
    assert_declines,
    only_function,
    schedule_and_check,
    trace,
)

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'

ADD_RELU = f"""{HEADER}
g (float[4, 32, 48] x, float[48] b) => (float[4, 32, 48] y) {{
  a = Add(x, b)
  y = Relu(a)
}}"""

# Large enough (12 MiB moved) that the threads pay for themselves.
BIG_ADD = f"""{HEADER}
g (float[64, 256, 64] x, float[64, 256, 64] z) => (float[64, 256, 64] y) {{ y = Add(x, z) }}"""

# BERT's per-head transpose: [seq, heads, dim] -> [heads, dim, seq].
TRANSPOSE_HEADS = f"""{HEADER}
g (float[1, 64, 256] x) => (float[1, 4, 64, 64] y) {{
  shape = Constant<value = int64[4] {{1, 64, 4, 64}}>()
  r = Reshape(x, shape)
  y = Transpose<perm = [0, 2, 3, 1]>(r)
}}"""

# ResNet's input layout change, NCHW -> NHWC with three channels.
IMAGE_TO_NHWC = f"""{HEADER}
g (float[1, 3, 32, 32] x) => (float[1, 32, 32, 3] y) {{ y = Transpose<perm = [0, 2, 3, 1]>(x) }}"""

# BERT's position-id clamp: int64 compare, add and select.
NEGATIVE_IDS = f"""{HEADER}
g (int64[4, 96] ids, int64 offset) => (int64[4, 96] y) {{
  zero = Constant<value = int64 {{0}}>()
  negative = Less(ids, zero)
  shifted = Add(ids, offset)
  y = Where(negative, shifted, ids)
}}"""

EMBEDDING = f"""{HEADER}
g (float[100, 64] table, int64[2, 24] ids) => (float[2, 24, 64] y) {{
  y = Gather<axis = 0>(table, ids)
}}"""

SPLIT = f"""{HEADER}
g (float[4, 96] x) => (float[4, 32] a, float[4, 64] b) {{
  sizes = Constant<value = int64[2] {{32, 64}}>()
  a, b = Split<axis = 1>(x, sizes)
}}"""

LOG = f"""{HEADER}
g (float[32, 1024] x) => (float[32, 1024] y) {{ y = Log(x) }}"""

SUM_ROWS = f"""{HEADER}
g (float[8, 64] x) => (float[8] y) {{
  axes = Constant<value = int64[1] {{1}}>()
  y = ReduceSum<keepdims = 0>(x, axes)
}}"""

DYNAMIC_RELU = f"""{HEADER}
g (float[batch, 64] x) => (float[batch, 64] y) {{ y = Relu(x) }}"""


def _schedule(text: str, prefix: str) -> Scheduled:
    return schedule_and_check(ElementwiseRule(), only_function(text, prefix))


def test_vector_width_is_the_widest_power_of_two_dividing_the_axis() -> None:
    assert vector_width(48, 16) == 16
    assert vector_width(24, 16) == 8
    assert vector_width(3, 16) == 1


def test_threads_only_for_work_that_pays_for_them() -> None:
    assert not worth_parallel(64 * 1024, 1000, TUNING)
    assert worth_parallel(TUNING.l2_bytes, 0, TUNING)
    assert worth_parallel(1024, 1 << 20, TUNING)
    single_core = TUNING.__class__(512, 1, TUNING.l1_bytes, TUNING.l2_bytes, TUNING.l3_bytes)
    assert not worth_parallel(1 << 30, 1 << 30, single_core)


def test_small_chain_is_inlined_vectorized_and_serial() -> None:
    outcome = _schedule(ADD_RELU, "fused_add_relu")
    assert "1 blocks inlined" in outcome.detail
    assert "serial, vector 16" in outcome.detail
    assert "sch.vectorize" in trace(outcome) and "sch.parallel" not in trace(outcome)


def test_large_function_runs_in_parallel() -> None:
    outcome = _schedule(BIG_ADD, "add")
    assert "parallel, vector 16" in outcome.detail
    assert "sch.parallel" in trace(outcome)


def test_head_transpose_is_tiled() -> None:
    outcome = _schedule(TRANSPOSE_HEADS, "fused_reshape_transpose")
    assert "transpose tiles" in outcome.detail
    assert "sch.unroll" in trace(outcome)


def test_three_channel_layout_change_vectorizes_along_the_image_row() -> None:
    outcome = _schedule(IMAGE_TO_NHWC, "transpose")
    assert "vector 16, transpose tiles" in outcome.detail


def test_int64_select_uses_eight_lanes() -> None:
    outcome = _schedule(NEGATIVE_IDS, "fused_less_add_where")
    assert "2 blocks inlined" in outcome.detail
    assert "vector 8" in outcome.detail


def test_gather_vectorizes_along_the_embedding_row() -> None:
    outcome = _schedule(EMBEDDING, "take")
    assert "vector 16" in outcome.detail


def test_each_output_of_a_split_gets_its_own_vector_loop() -> None:
    outcome = _schedule(SPLIT, "split")
    assert outcome.detail.count("vector 16") == 2


def test_library_calls_stay_scalar_but_use_the_threads() -> None:
    outcome = _schedule(LOG, "tir_log")
    assert "parallel, scalar" in outcome.detail


@pytest.mark.parametrize(
    ("text", "prefix", "reason"),
    [
        (SUM_ROWS, "sum", "has a reduction block"),
        (DYNAMIC_RELU, "relu", "dynamic extent"),
    ],
    ids=["reduction", "dynamic"],
)
def test_declines_reductions_and_dynamic_shapes(text: str, prefix: str, reason: str) -> None:
    assert_declines(ElementwiseRule(), only_function(text, prefix), reason)
