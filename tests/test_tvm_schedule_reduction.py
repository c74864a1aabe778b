"""The reduction schedule rule: a single reduction (global average pool, NHWC max pool, a sum
over the last axis, a max over a middle axis) is vectorized along the input's contiguous axis,
a kept axis as plain vector accumulators or a reduced one through rfactor; epilogues run per
output block; the results match the unscheduled functions; several reductions or contractions
are declined."""

from __future__ import annotations

import pytest

from targets.tvm_schedules.analysis import reduction_width
from targets.tvm_schedules.reduction import ReductionRule
from targets.tvm_schedules.rule import Scheduled
from tests.tvm_schedule_helpers import assert_declines, only_function, schedule_and_check, trace

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'

# The convolution makes the pipeline's layout NHWC, so the pool reduces H and W with the
# channels innermost (ResNet's global average pool and stem max pool).
GLOBAL_AVERAGE_POOL = f"""{HEADER}
g (float[2, 3, 7, 7] x, float[64, 3, 1, 1] w) => (float[2, 64, 1, 1] y) {{
  c = Conv(x, w)
  y = GlobalAveragePool(c)
}}"""

MAX_POOL = f"""{HEADER}
g (float[1, 3, 16, 16] x, float[32, 3, 3, 3] w) => (float[1, 32, 8, 8] y) {{
  c = Conv<pads = [1, 1, 1, 1]>(x, w)
  y = MaxPool<kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]>(c)
}}"""

MEAN_LAST_AXIS = f"""{HEADER}
g (float[16, 768] x) => (float[16] y) {{ y = ReduceMean<keepdims = 0, axes = [1]>(x) }}"""

MAX_MIDDLE_AXIS = f"""{HEADER}
g (float[4, 24, 48] x) => (float[4, 48] y) {{ y = ReduceMax<keepdims = 0, axes = [1]>(x) }}"""

SOFTMAX = f"""{HEADER}
g (float[4, 64] x) => (float[4, 64] y) {{ y = Softmax<axis = -1>(x) }}"""

MATMUL = f"""{HEADER}
g (float[8, 32] x, float[32, 16] w) => (float[8, 16] y) {{ y = MatMul(x, w) }}"""

RELU = f"""{HEADER}
g (float[8, 64] x) => (float[8, 64] y) {{ y = Relu(x) }}"""


def _schedule(text: str, prefix: str) -> Scheduled:
    return schedule_and_check(ReductionRule(), only_function(text, prefix))


def test_reduction_width_balances_the_vector_loop_against_the_lane_sum() -> None:
    assert reduction_width(128, 16) == 16
    assert reduction_width(4096, 16) == 64
    assert reduction_width(7, 16) == 1


def test_global_average_pool_accumulates_channel_vectors() -> None:
    outcome = _schedule(GLOBAL_AVERAGE_POOL, "mean")
    assert "vector 16 along the kept axis" in outcome.detail
    assert "epilogue" in outcome.detail
    assert "sch.decompose_reduction" in trace(outcome)


def test_nhwc_max_pool_inlines_the_padding_and_vectorizes_channels() -> None:
    outcome = _schedule(MAX_POOL, "max_pool2d")
    assert "vector 16 along the kept axis" in outcome.detail
    assert "sch.compute_inline" in trace(outcome)


def test_mean_over_the_last_axis_uses_rfactor() -> None:
    outcome = _schedule(MEAN_LAST_AXIS, "mean")
    assert "along the reduced axis" in outcome.detail
    assert "sch.rfactor" in trace(outcome)


def test_max_over_a_middle_axis_vectorizes_the_contiguous_kept_axis() -> None:
    outcome = _schedule(MAX_MIDDLE_AXIS, "max")
    assert "vector 16 along the kept axis" in outcome.detail


@pytest.mark.parametrize(
    ("text", "prefix", "reason"),
    [
        (SOFTMAX, "fast_softmax", "2 reduction blocks, not one"),
        (MATMUL, "matmul", "contraction"),
        (RELU, "relu", "0 reduction blocks"),
    ],
    ids=["softmax", "matmul", "elementwise"],
)
def test_declines_what_is_not_one_plain_reduction(text: str, prefix: str, reason: str) -> None:
    assert_declines(ReductionRule(), only_function(text, prefix), reason)
