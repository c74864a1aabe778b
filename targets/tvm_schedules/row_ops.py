"""Row operations: softmax, layer and RMS normalization, and their decomposed forms (mean,
subtract, power, mean, sqrt, divide): reductions along the innermost axis whose results are used
across the same rows. One row per parallel iteration: every block is computed at the row loop,
so a row's intermediates (its exponentials, its mean) stay in L1 between the passes, and each
pass is vectorized along the row (the reductions through rfactor)."""

from __future__ import annotations

from math import prod
from typing import Any

from targets.tvm_schedules.analysis import (
    calls_libm,
    contiguous_axis,
    estimated_operations,
    is_contraction,
    moved_bytes,
    reduction_width,
    static_extents,
    vectorize_inner,
    worth_parallel,
)
from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import BlockRule, Declined, Scheduled


def _iteration_count(sch: Any, block: Any) -> int:
    return prod(static_extents(sch, sch.get_loops(block)) or [])


def _inline_same_size(sch: Any, blocks: list[Any], outputs: list[Any]) -> list[Any]:
    """Inline each injective block that has one consumer iterating over as many points as it
    does: an elementwise step of the same pass. A block read by several passes (softmax's
    exponentials) or per row by a per-element pass (a row's mean) stays, computed once per row
    rather than once per use."""
    from tvm.s_tir import ScheduleError

    remaining = list(blocks)
    changed = True
    while changed:
        changed = False
        for block in remaining:
            if any(sch.get(block).same_as(sch.get(output)) for output in outputs):
                continue
            if not _is_spatial(sch, block):
                continue
            consumers = sch.get_consumers(block)
            if len(consumers) != 1:
                continue
            if _iteration_count(sch, consumers[0]) != _iteration_count(sch, block):
                continue
            try:
                sch.compute_inline(block)
            except ScheduleError:
                continue
            remaining.remove(block)
            changed = True
            break
    return remaining


def _is_spatial(sch: Any, block: Any) -> bool:
    from tvm import tirx

    return all(iv.iter_type == tirx.IterVar.DataPar for iv in sch.get(block).iter_vars)


def _move_lane_innermost(sch: Any, partial: Any, lane_axis: int) -> None:
    """rfactor puts the partial results' lane axis first among the block's axes, and
    compute_at builds loops in that order; make it the last, so that it is the vector loop."""
    stmt = sch.get(partial)
    lane_var = stmt.body.indices[lane_axis]
    order = [i for i, iv in enumerate(stmt.iter_vars) if not iv.var.same_as(lane_var)]
    order += [i for i, iv in enumerate(stmt.iter_vars) if iv.var.same_as(lane_var)]
    sch.reorder_block_iter_var(partial, order)


def _row_count(sch: Any, reductions: list[Any]) -> int | Declined:
    """How many rows the reductions run over, all of them along the innermost axis."""
    rows = None
    for info in reductions:
        stmt = sch.get(info.block_rv)
        if is_contraction(stmt):
            return Declined(f"block {info.name} is a contraction (matmul or convolution)")
        kind = info.dom_kind()
        if "R" in kind.rstrip("R"):
            return Declined(f"block {info.name} reduces axes that are not the innermost")
        if contiguous_axis(stmt) != len(kind) - 1:
            return Declined(f"block {info.name} reduces along a strided axis")
        kept = prod(int(n) for n, k in zip(info.dom(), kind, strict=True) if k == "S")
        if rows not in (None, kept):
            return Declined("the reductions run over different rows")
        rows = kept
    assert rows is not None
    return rows


def _vectorizable_rfactor(sch: Any, block: Any, lanes: int) -> tuple[Any, int] | None:
    """Split a reduction along the row into `width` partial results per row (a vector of
    accumulators) and a block that adds them up; None when the row does not split."""
    from tvm import tirx

    if calls_libm(sch, block):
        return None
    stmt = sch.get(block)
    kept = sum(iv.iter_type == tirx.IterVar.DataPar for iv in stmt.iter_vars)
    loops = sch.get_loops(block)
    reduced = sch.fuse(*loops[kept:]) if len(loops) - kept > 1 else loops[kept]
    width = reduction_width(int(sch.get(reduced).extent), lanes)
    if width == 1:
        return None
    _, lane = sch.split(reduced, factors=[None, width])
    partial = sch.rfactor(lane, factor_axis=kept)
    _move_lane_innermost(sch, partial, kept)
    return partial, width


class RowOpRule(BlockRule):
    name = "row-op"

    def schedule_nest(self, sch: Any, infos: list[Any], tuning: CpuTuning) -> Scheduled | Declined:
        from tvm.s_tir.dlight.analysis import get_root_block

        reductions = [info for info in infos if not info.is_injective()]
        if not reductions:
            return Declined("no reduction block")
        for info in infos:
            if set(info.dom_kind()) - {"S", "R"}:
                return Declined(f"block {info.name} has iterators neither kept nor reduced")
            if static_extents(sch, info.get_loops()) is None:
                return Declined(f"block {info.name} has a loop of dynamic extent")
        rows = _row_count(sch, reductions)
        if isinstance(rows, Declined):
            return rows
        root = get_root_block(sch)
        outputs = sch.get_output_blocks(root)
        if len(outputs) != 1 or not infos[-1].is_injective():
            return Declined("not one elementwise output block")
        output = outputs[0]
        output_extents = static_extents(sch, sch.get_loops(output)) or []
        if len(reductions) == 1 and prod(output_extents) == rows:
            return Declined("one reduction with a per-row epilogue (a plain reduction)")
        row_axes = next(
            (n for n in range(1, len(output_extents) + 1) if prod(output_extents[:n]) == rows),
            None,
        )
        if row_axes is None:
            return Declined("the output's leading axes do not enumerate the reduced rows")

        blocks = _inline_same_size(sch, [info.block_rv for info in infos], [output])
        operations = estimated_operations(sch, blocks)
        parallel = worth_parallel(moved_bytes(sch, blocks), operations, tuning)
        lanes = tuning.lanes(sch.get(output).writes[0].source.dtype.bits)
        partials = [
            split
            for block in blocks
            if not _is_spatial(sch, block)
            and (split := _vectorizable_rfactor(sch, block, lanes)) is not None
        ]
        row_loops = sch.get_loops(output)[:row_axes]
        row = sch.fuse(*row_loops) if len(row_loops) > 1 else row_loops[0]
        for block in reversed(sch.get_child_blocks(root)[:-1]):
            sch.compute_at(block, row, preserve_unit_loops=True)
        # Every block now runs under the row loop; the loops below it walk the row.
        widths = [
            vectorize_inner(sch, block, tuning, enclosing=1)
            for block in blocks
            if _is_spatial(sch, block)
        ]
        for partial, _ in partials:
            sch.vectorize(sch.get_loops(partial)[-1])
        if parallel:
            sch.parallel(row)
        for partial, _ in partials:
            init = sch.decompose_reduction(partial, sch.get_loops(partial)[-2])
            sch.vectorize(sch.get_loops(init)[-1])
        threads = "parallel" if parallel else "serial"
        reduction_widths = ", ".join(str(width) for _, width in partials) or "none"
        return Scheduled(
            sch,
            f"{rows} rows, {threads}; {len(reductions)} reductions (rfactor widths "
            f"{reduction_widths}); elementwise passes vector {max(widths, default=1)}",
        )
