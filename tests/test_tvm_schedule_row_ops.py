"""The row-operation schedule rule: softmax, layer normalization and the decomposed
normalization chain (mean, subtract, power, mean, sqrt, divide) are computed one row per
iteration with every pass at the row loop, reductions vectorized through rfactor and the
elementwise passes along the row; the results match the unscheduled functions; reductions that
are not along the innermost axis, plain reductions and contractions are declined."""

from __future__ import annotations

import pytest

from targets.tvm_schedules.row_ops import RowOpRule
from tests.tvm_schedule_helpers import (
    assert_declines,
    fused_functions,
    only_function,
    schedule_and_check,
    trace,
)

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'

# BERT's attention probabilities: batch, heads, query rows, key columns.
SOFTMAX = f"""{HEADER}
g (float[2, 4, 32, 64] x) => (float[2, 4, 32, 64] y) {{ y = Softmax<axis = -1>(x) }}"""

LAYER_NORM = f"""{HEADER}
g (float[2, 16, 128] x, float[128] s, float[128] b) => (float[2, 16, 128] y) {{
  y = LayerNormalization<axis = -1, epsilon = 0.00001>(x, s, b)
}}"""

# Layer normalization as exporters often write it; the pipeline fuses it into several
# functions (mean and subtract; power; mean, sqrt, divide, scale and shift).
DECOMPOSED_LAYER_NORM = f"""{HEADER}
g (float[2, 16, 128] x, float[128] s, float[128] b) => (float[2, 16, 128] y) {{
  m = ReduceMean<keepdims = 1, axes = [-1]>(x)
  d = Sub(x, m)
  two = Constant<value = float {{2.0}}>()
  p = Pow(d, two)
  v = ReduceMean<keepdims = 1, axes = [-1]>(p)
  eps = Constant<value = float {{0.00001}}>()
  ve = Add(v, eps)
  sd = Sqrt(ve)
  n = Div(d, sd)
  sc = Mul(n, s)
  y = Add(sc, b)
}}"""

SOFTMAX_OVER_CHANNELS = f"""{HEADER}
g (float[2, 16, 8, 32] x) => (float[2, 16, 8, 32] y) {{ y = Softmax<axis = 1>(x) }}"""

MEAN = f"""{HEADER}
g (float[16, 128] x) => (float[16] y) {{ y = ReduceMean<keepdims = 0, axes = [1]>(x) }}"""

MATMUL = f"""{HEADER}
g (float[8, 32] x, float[32, 16] w) => (float[8, 16] y) {{ y = MatMul(x, w) }}"""


def test_softmax_runs_one_row_per_iteration() -> None:
    outcome = schedule_and_check(RowOpRule(), only_function(SOFTMAX, "fast_softmax"))
    assert outcome.detail.startswith("256 rows, parallel; 2 reductions (rfactor widths 16, 16)")
    applied = trace(outcome)
    assert "sch.compute_at" in applied and "sch.rfactor" in applied and "sch.parallel" in applied


def test_layer_norm_vectorizes_both_reductions_and_the_normalization() -> None:
    outcome = schedule_and_check(RowOpRule(), only_function(LAYER_NORM, "layer_norm"))
    assert "32 rows" in outcome.detail
    assert "2 reductions (rfactor widths 16, 16)" in outcome.detail
    assert "elementwise passes vector 16" in outcome.detail


def test_decomposed_layer_norm_functions_are_row_operations() -> None:
    functions = fused_functions(DECOMPOSED_LAYER_NORM)
    row_functions = [name for name in functions if name.startswith("fused_mean")]
    assert len(row_functions) == 2
    for name in row_functions:
        outcome = schedule_and_check(RowOpRule(), functions[name])
        assert "1 reductions (rfactor widths 16)" in outcome.detail


@pytest.mark.parametrize(
    ("text", "prefix", "reason"),
    [
        (SOFTMAX_OVER_CHANNELS, "fast_softmax", "reduces along a strided axis"),
        (MEAN, "mean", "per-row epilogue"),
        (MATMUL, "matmul", "contraction"),
    ],
    ids=["strided", "plain-reduction", "matmul"],
)
def test_declines_what_is_not_a_row_operation(text: str, prefix: str, reason: str) -> None:
    assert_declines(RowOpRule(), only_function(text, prefix), reason)
