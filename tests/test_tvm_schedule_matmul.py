"""The matmul schedule rule: dense, batched, transposed-B and one-row matmuls with their fused
epilogues compute what the unscheduled functions do, tiles come from the host's figures, and
what is not a matmul is declined with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.matmul import MatmulAxes, MatmulRule, choose_split_k, choose_tiles
from targets.tvm_schedules.rule import Scheduled
from tests.tvm_schedule_helpers import (
    TUNING,
    assert_declines,
    only_function,
    schedule_and_check,
    trace,
)

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'

DENSE_BIAS = f"""{HEADER}
g (float[1, 64, 48] x, float[48, 64] w, float[64] b) => (float[1, 64, 64] y) {{
  m = MatMul(x, w)
  y = Add(m, b)
}}"""

# BERT's feed-forward: bias, then GELU written with erf.
DENSE_GELU = f"""{HEADER}
g (float[1, 24, 32] x, float[32, 64] w, float[64] b) => (float[1, 24, 64] y) {{
  m = MatMul(x, w)
  a = Add(m, b)
  root2 = Constant<value = float {{1.4142135}}>()
  d = Div(a, root2)
  e = Erf(d)
  one = Constant<value = float {{1.0}}>()
  e1 = Add(e, one)
  p = Mul(a, e1)
  half = Constant<value = float {{0.5}}>()
  y = Mul(p, half)
}}"""

# Attention scores: batched Q.K^T, scaled, plus a mask broadcast over heads and rows.
ATTENTION_SCORES = f"""{HEADER}
g (float[2, 4, 16, 8] q, float[2, 4, 8, 16] k, float[2, 1, 1, 16] mask)
  => (float[2, 4, 16, 16] y) {{
  s = MatMul(q, k)
  scale = Constant<value = float {{2.0}}>()
  d = Div(s, scale)
  y = Add(d, mask)
}}"""

# Sizes no register tile divides: 13 rows, 100 columns.
RAGGED_RELU = f"""{HEADER}
g (float[13, 20] x, float[20, 100] w) => (float[13, 100] y) {{
  m = MatMul(x, w)
  y = Relu(m)
}}"""

# ResNet's classifier: a few rows (the batch) against a 1000-class weight, plus bias.
FEW_ROWS = f"""{HEADER}
g (float[2, 512] x, float[512, 1000] w, float[1000] b) => (float[2, 1000] y) {{
  y = Gemm(x, w, b)
}}"""

SUM_ROWS = f"""{HEADER}
g (float[8, 64] x) => (float[8, 1] y) {{
  axes = Constant<value = int64[1] {{1}}>()
  y = ReduceSum<keepdims = 1>(x, axes)
}}"""

RELU_ONLY = f"""{HEADER}
g (float[8, 64] x) => (float[8, 64] y) {{ y = Relu(x) }}"""

DOUBLE_MATMUL = f"""{HEADER}
g (double[8, 16] x, double[16, 32] w) => (double[8, 32] y) {{ y = MatMul(x, w) }}"""

DYNAMIC_ROWS = f"""{HEADER}
g (float[batch, 16] x, float[16, 32] w) => (float[batch, 32] y) {{ y = MatMul(x, w) }}"""


def _axes(m: int, n: int, k: int) -> MatmulAxes:
    """C[m, n] += A[m, k] * B[k, n] with iterators (i, j, k)."""
    return MatmulAxes((), (0,), 1, 2, 1, 1, True, (m, n, k))


def test_tiles_fill_the_register_file_and_l2() -> None:
    tiles = choose_tiles(_axes(1024, 1024, 1024), TUNING)
    # 8 rows x 2 AVX-512 vectors = 16 accumulators of the 32 registers.
    assert (tiles.rows, tiles.columns) == (8, 32)
    # Half of L2 holds the task's rows of A: 1 MiB / 4 KiB per row.
    assert tiles.task_rows == 256
    assert tiles.pack
    assert tiles.padding(_axes(1024, 1024, 1024)) is None


def test_tiles_follow_narrower_vectors_and_pad_ragged_sizes() -> None:
    avx2 = CpuTuning(vector_bits=256, cores=4, l1_bytes=32 << 10, l2_bytes=1 << 20, l3_bytes=0)
    # 16 registers: 8 accumulators, 4 rows x 2 vectors of 8 lanes.
    tiles = choose_tiles(_axes(128, 64, 64), avx2)
    assert (tiles.rows, tiles.columns) == (4, 16)
    # 1000 = 125 x 8: one-vector tiles divide it exactly.
    exact = choose_tiles(_axes(100, 1000, 64), avx2)
    assert (exact.rows, exact.columns, exact.padded_columns) == (4, 8, 1000)
    # 100 columns: no tile of 1 or 2 vectors divides them, so they are padded to whole tiles.
    ragged = choose_tiles(_axes(100, 100, 64), avx2)
    assert (ragged.columns, ragged.padded_columns) == (16, 112)
    assert ragged.padding(_axes(100, 100, 64)) == [1, 16, 1]


def test_few_rows_split_k_over_the_cores() -> None:
    plan = choose_split_k(_axes(1, 1000, 2048), TUNING)
    assert plan.parts == TUNING.cores * 4
    assert plan.width == 8  # the widest power of two dividing 1000, within 16 lanes
    assert plan.k_unroll == 4


def _scheduled(func: Any) -> Scheduled:
    return schedule_and_check(MatmulRule(), func)


def _block_names(schedule: Any) -> list[str]:
    from tvm.s_tir.dlight.analysis import get_root_block

    return [schedule.get(b).name_hint for b in schedule.get_child_blocks(get_root_block(schedule))]


def test_dense_with_bias_is_register_blocked_and_parallel() -> None:
    outcome = _scheduled(only_function(DENSE_BIAS, "fused_matmul_add"))
    applied = trace(outcome)
    for primitive in ("parallel", "vectorize", "unroll", "cache_write", "decompose_reduction"):
        assert f"sch.{primitive}(" in applied
    assert "reverse_compute_inline" in applied  # the bias is added as the tile is written
    assert "register tile 8x32" in outcome.detail and "B packed" in outcome.detail
    assert "separate epilogue" not in outcome.detail


def test_gelu_epilogue_is_fused_into_the_tile_write() -> None:
    outcome = _scheduled(only_function(DENSE_GELU, "fused_matmul_add"))
    names = _block_names(outcome.schedule)
    assert not any(name.startswith(("T_divide", "compute", "T_multiply")) for name in names)
    assert "separate epilogue" not in outcome.detail


def test_attention_batches_are_part_of_the_parallel_loop() -> None:
    outcome = _scheduled(only_function(ATTENTION_SCORES, "fused_matmul"))
    assert "batch=8" in outcome.detail
    # 2 x 4 heads, each one row task by one 16-column tile.
    assert "parallel over 8 tasks" in outcome.detail


def test_ragged_sizes_are_padded_and_still_exact() -> None:
    outcome = _scheduled(only_function(RAGGED_RELU, "fused_matmul_relu"))
    assert "pad_einsum" in trace(outcome)
    assert "padded M 13->16, N 100->128" in outcome.detail


def test_few_rows_split_k_and_stream_b() -> None:
    outcome = _scheduled(only_function(FEW_ROWS, "fused_matmul_add"))
    assert "K split into 8 parallel partial sums" in outcome.detail
    assert "sch.rfactor(" in trace(outcome)


def test_b_stored_transposed_is_packed_column_innermost() -> None:
    from tvm import te

    a = te.placeholder((24, 40), name="A")
    b = te.placeholder((48, 40), name="B")  # [N, K], as dense layers store weights
    k = te.reduce_axis((0, 40), name="k")
    c = te.compute((24, 48), lambda i, j: te.sum(a[i, k] * b[j, k], axis=k), name="matmul")
    outcome = _scheduled(te.create_prim_func([a, b, c]))
    assert "transform_layout" in trace(outcome)
    assert "B packed" in outcome.detail


@pytest.mark.parametrize(
    ("onnx_text", "prefix", "reason"),
    [
        (SUM_ROWS, "sum", "the reduction is not C += A * B"),
        (RELU_ONLY, "relu", "0 reduction blocks"),
        (DOUBLE_MATMUL, "matmul", "dtype float64"),
        (DYNAMIC_ROWS, "matmul", "dynamic extent"),
    ],
)
def test_declines_what_is_not_a_static_fp32_matmul(
    onnx_text: str, prefix: str, reason: str
) -> None:
    assert_declines(MatmulRule(), only_function(onnx_text, prefix), reason)
