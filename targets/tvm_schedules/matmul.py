"""Dense and batched matmul, with the elementwise epilogue fused after it, as a register-blocked
CPU GEMM: each parallel task copies a panel of B's columns into a contiguous buffer, then sweeps
tiles of A's rows over it with a micro-kernel that keeps a tile of C in vector registers across
the whole reduction; the epilogue (bias, residual, GELU...) is applied to each tile as it is
written, while it is still in registers. A few rows times a matrix (a classifier's last layer)
is memory-bound instead: the cores split K and each streams its rows of B whole."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from math import ceil, prod
from typing import Any

from targets.tvm_schedules.analysis import (
    DTYPE_BYTES,
    around_the_reduction,
    divisors,
    kernel_extents,
    largest_divisor_at_most,
    read_constant_in_layout,
    root_blocks,
    vector_registers,
    vector_width,
)
from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import Declined, Scheduled, ScheduleRule

# Vectors of C per micro-kernel row: the B vectors loaded at each k step are shared by every row
# of the tile, and two of them give each row two independent FMA chains.
VECTORS_PER_ROW = 2
# The parallel loop gets at least this many tasks per core, so that uneven tasks still balance.
TASKS_PER_CORE = 4
# A few rows times a matrix: rows of B added into the partial sums per pass over them, so each
# partial sum is loaded and stored once per this many FMAs.
SPLIT_K_UNROLL = 4
# Rows of B each part of a split K gets at least, so that summing the parts' partial sums stays
# small next to computing them.
SPLIT_K_MIN_ROWS = 64


@dataclass(frozen=True)
class MatmulAxes:
    """The matmul block's iterators by role, as positions in its iter_vars: C[batch, rows,
    column] += A[batch, rows, reduction] * B[batch, reduction, column], in any buffer layout."""

    batch: tuple[int, ...]  # outside the GEMM: shared batch axes, unit axes, other B-only axes
    rows: tuple[int, ...]  # in A and C only (M), fused into one row axis
    column: int  # C's innermost axis, in B and C only (N): the vectorized one
    reduction: int  # K
    b_read: int  # which of the block's two reads is B
    b_column_dim: int  # the dimension of B the column axis indexes
    b_column_innermost: bool  # False for B stored [N, K]: packing then transposes it
    extents: tuple[int, ...]

    @property
    def m(self) -> int:
        return prod(self.extents[i] for i in self.rows)

    @property
    def n(self) -> int:
        return self.extents[self.column]

    @property
    def k(self) -> int:
        return self.extents[self.reduction]

    @property
    def batches(self) -> int:
        return prod(self.extents[i] for i in self.batch)

    def is_few_rows(self, tuning: CpuTuning) -> bool:
        """No more rows of A than one register tile has, against one row-major B: too little
        reuse of B for the GEMM schedule, so the split-K, B-streaming one."""
        return (
            self.m <= micro_kernel_rows_target(tuning)
            and self.batches == 1
            and self.b_column_innermost
        )


@dataclass(frozen=True)
class MatmulTiles:
    """Micro-kernel `rows` x `columns` (C kept in registers), `task_rows` rows of A per parallel
    task (sized so that they stay in L2 while the task's B panel sweeps them), and the row and
    column extents after padding to whole tiles."""

    rows: int
    columns: int
    task_rows: int
    padded_inner_rows: int  # the innermost row axis, padded to make the rows a multiple of `rows`
    padded_columns: int
    # Copy each task's B panel contiguous: it is reused by several row tiles, or it is
    # transposed or padded on the way.
    pack: bool
    tasks: int

    def padding(self, axes: MatmulAxes) -> list[int] | None:
        """pad_einsum's factors per block iterator, or None when every tile fits exactly."""
        factors = [1] * len(axes.extents)
        if axes.rows and self.padded_inner_rows != axes.extents[axes.rows[-1]]:
            factors[axes.rows[-1]] = self.rows
        if self.padded_columns != axes.n:
            factors[axes.column] = self.columns
        return factors if any(f > 1 for f in factors) else None

    def describe(self, axes: MatmulAxes, lanes: int, b_constant_packed: bool) -> str:
        padded = []
        if axes.rows and self.padded_inner_rows != axes.extents[axes.rows[-1]]:
            padded_m = axes.m // axes.extents[axes.rows[-1]] * self.padded_inner_rows
            padded.append(f"M {axes.m}->{padded_m}")
        if self.padded_columns != axes.n:
            padded.append(f"N {axes.n}->{self.padded_columns}")
        return (
            f"register tile {self.rows}x{self.columns} ({lanes} lanes), "
            f"{self.task_rows} rows per task, parallel over {self.tasks} tasks"
            + (", B packed at compile time" if b_constant_packed else "")
            + (", B packed per task" if self.pack and not b_constant_packed else "")
            + (f", padded {', '.join(padded)}" if padded else "")
        )


@dataclass(frozen=True)
class SplitKPlan:
    """A few rows times a matrix: K split into `parts` parallel partial sums, each streaming its
    rows of B whole in vectors of `width` lanes, `k_unroll` rows per pass."""

    parts: int
    width: int
    k_unroll: int

    def describe(self) -> str:
        return (
            f"few rows: K split into {self.parts} parallel partial sums, {self.width}-lane "
            f"vectors, {self.k_unroll} rows of B per pass"
        )


def micro_kernel_rows_target(tuning: CpuTuning) -> int:
    """Half the register file accumulates C, `VECTORS_PER_ROW` vectors per row."""
    return vector_registers(tuning) // 2 // VECTORS_PER_ROW


def _micro_kernel_rows(m: int, target: int) -> int | None:
    """The largest divisor of `m` between half `target` and `target`; None asks for padding."""
    if m <= target:
        return m
    fitting = [d for d in divisors(m) if ceil(target / 2) <= d <= target]
    return max(fitting) if fitting else None


def _micro_kernel_columns(n: int, target: int, lanes: int) -> int | None:
    """The widest divisor of `n` of a power-of-two count of vectors, at most `target` and at
    least half of it; None asks for padding. (LLVM turns a vector of any other width, 3 or 2.5
    registers' worth, into spills and shuffles.)"""
    fitting = [
        d
        for d in divisors(n)
        if d % lanes == 0 and _is_power_of_two(d // lanes) and target // 2 <= d <= target
    ]
    return max(fitting) if fitting else None


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def choose_tiles(axes: MatmulAxes, tuning: CpuTuning) -> MatmulTiles:
    """Register tile from the register file, task rows from L2, padding only when no tile
    divides the extents."""
    lanes = tuning.lanes(DTYPE_BYTES * 8)
    inner_rows = axes.extents[axes.rows[-1]] if axes.rows else 1
    if axes.m == 1:
        # One row: a quarter of the registers accumulate along N, enough independent FMA chains
        # to cover the FMA latency.
        rows, column_target = 1, lanes * vector_registers(tuning) // 4
    else:
        target_rows = micro_kernel_rows_target(tuning)
        rows = _micro_kernel_rows(axes.m, target_rows) or target_rows
        column_target = lanes * VECTORS_PER_ROW
    while column_target > lanes and column_target // 2 >= axes.n:
        column_target //= 2  # narrow outputs: do not pad them to a wide tile
    columns = _micro_kernel_columns(axes.n, column_target, lanes) or column_target
    padded_columns = ceil(axes.n / columns) * columns
    padded_inner_rows = inner_rows if axes.m % rows == 0 else ceil(inner_rows / rows) * rows
    padded_m = axes.m // inner_rows * padded_inner_rows

    rows_in_l2 = max(rows, (tuning.l2_bytes // 2) // (axes.k * DTYPE_BYTES))
    column_tiles = padded_columns // columns
    candidates = [t * rows for t in divisors(padded_m // rows) if t * rows <= rows_in_l2]
    for task_rows in sorted(candidates, reverse=True):
        tasks = axes.batches * (padded_m // task_rows) * column_tiles
        if tasks >= tuning.cores * TASKS_PER_CORE:
            break
    pack = task_rows > rows or not axes.b_column_innermost or padded_columns != axes.n
    return MatmulTiles(rows, columns, task_rows, padded_inner_rows, padded_columns, pack, tasks)


def choose_split_k(axes: MatmulAxes, tuning: CpuTuning) -> SplitKPlan:
    """As many K parts as tasks wanted (dividing K), the widest power-of-two vector dividing N
    (LLVM splits other widths into scalar shuffles)."""
    most_parts = max(1, min(tuning.cores * TASKS_PER_CORE, axes.k // SPLIT_K_MIN_ROWS))
    parts = largest_divisor_at_most(axes.k, most_parts)
    width = vector_width(axes.n, tuning.lanes(DTYPE_BYTES * 8))
    k_unroll = max(u for u in divisors(SPLIT_K_UNROLL) if (axes.k // parts) % u == 0)
    return SplitKPlan(parts, width, k_unroll)


def _access_vars(region: Any, iter_vars: list[Any]) -> list[int | None] | str:
    """Per buffer dimension, the block iterator it is indexed by (None for a constant index)."""
    import tvm

    positions: list[int | None] = []
    for dim in region.region:
        index = dim.min
        if isinstance(index, tvm.tirx.IntImm):
            positions.append(None)
            continue
        match = [i for i, v in enumerate(iter_vars) if v.same_as(index)]
        if not match:
            return f"index {index} of {region.source.name} is not a plain iterator"
        positions.append(match[0])
    return positions


def _has_trivial_binding(sch: Any, block_rv: Any) -> bool:
    """One loop per block iterator, bound in order: what the loop roles below assume."""
    import tvm

    loops = sch.get_loops(block_rv)
    if len(loops) != len(sch.get(block_rv).iter_vars) or not loops:
        return False
    realize = sch.get(loops[-1]).body
    return isinstance(realize, tvm.s_tir.SBlockRealize) and all(
        value.same_as(sch.get(loop).loop_var)
        for value, loop in zip(realize.iter_values, loops, strict=True)
    )


def matmul_axes(sch: Any, block_rv: Any) -> MatmulAxes | str:
    """The roles of the block's iterators, or why the block is not a matmul this rule takes."""
    import tvm

    block = sch.get(block_rv)
    if not _has_trivial_binding(sch, block_rv):
        return "the matmul block is not bound one loop per iterator"
    extents = kernel_extents(block, "C += A * B")
    if isinstance(extents, str):
        return extents
    regions = [*block.reads, *block.writes]
    iter_vars = [iv.var for iv in block.iter_vars]
    accesses = []
    for region in regions:
        access = _access_vars(region, iter_vars)
        if isinstance(access, str):
            return access
        accesses.append(access)
    first, second, output = ({i for i in a if i is not None} for a in accesses)
    reductions = [
        i for i, iv in enumerate(block.iter_vars) if iv.iter_type == tvm.tirx.IterVar.CommReduce
    ]
    if len(reductions) != 1:
        return f"{len(reductions)} reduction axes (one expected)"
    reduction = reductions[0]
    if reduction not in first or reduction not in second:
        return "the reduction axis does not index both inputs"
    if not accesses[2]:
        return "C is a scalar (a dot product)"
    column = accesses[2][-1]
    if column is None or extents[column] == 1:
        return "C has no column axis to vectorize (N = 1)"
    if (column in first) == (column in second):
        return "C's innermost axis is not a column of exactly one input"
    b_read = 0 if column in first else 1
    a_axes, b_axes = (second, first) if b_read == 0 else (first, second)
    rows, batch = [], []
    for i, var in enumerate(iter_vars):
        if i in (reduction, column):
            continue
        if i not in output:
            return f"spatial axis {var} does not index C"
        if extents[i] > 1 and i in a_axes and i not in b_axes:
            rows.append(i)
        else:
            batch.append(i)
    b_access = accesses[b_read]
    b_column_dim = b_access.index(column)
    b_column_innermost = all(i is None or extents[i] == 1 for i in b_access[b_column_dim + 1 :])
    return MatmulAxes(
        batch=tuple(batch),
        rows=tuple(rows),
        column=column,
        reduction=reduction,
        b_read=b_read,
        b_column_dim=b_column_dim,
        b_column_innermost=b_column_innermost,
        extents=tuple(extents),
    )


def _inline_epilogue(sch: Any, block: Any) -> None:
    """Inline the spatial blocks after `block` into their consumers until only those writing the
    function's outputs are left (the epilogue's intermediate steps, the crop of a padded C)."""
    from tvm.s_tir import ScheduleError

    changed = True
    while changed:
        changed = False
        blocks = root_blocks(sch)
        position = next(i for i, b in enumerate(blocks) if sch.get(b).same_as(sch.get(block)))
        for later in blocks[position + 1 :]:
            try:
                sch.compute_inline(later)
            except ScheduleError:  # it writes an output, or reads C in a way inlining can't keep
                continue
            changed = True
            break


def _fuse_epilogue(sch: Any, writer: Any, tile_loop: Any) -> list[str]:
    """Move the blocks consuming `writer` (the C tile write-back) into it or next to it, under
    `tile_loop`; returns the names of those that stayed separate loop nests."""
    from tvm.s_tir import ScheduleError

    separate = []
    for consumer in sch.get_consumers(writer):
        try:
            sch.reverse_compute_inline(consumer)
            continue
        except ScheduleError:  # e.g. it reads C at other indices than the tile writes
            pass
        try:
            sch.reverse_compute_at(consumer, tile_loop)
        except ScheduleError:
            separate.append(sch.get(consumer).name_hint)
            continue
        with contextlib.suppress(ScheduleError):  # else it runs next to the tile, but scalar
            sch.vectorize(sch.get_loops(consumer)[-1])
    return separate


class MatmulRule(ScheduleRule):
    name = "matmul"

    def schedule(self, sch: Any, tuning: CpuTuning) -> Scheduled | Declined:
        found = around_the_reduction(sch, "matmul")
        if isinstance(found, str):
            return Declined(found)
        _, block, _ = found
        axes = matmul_axes(sch, block)
        if isinstance(axes, str):
            return Declined(axes)
        _inline_epilogue(sch, block)
        shape = f"M={axes.m} N={axes.n} K={axes.k} batch={axes.batches}"
        plan = choose_split_k(axes, tuning) if axes.is_few_rows(tuning) else None
        if plan is not None and plan.parts >= tuning.cores:
            _schedule_split_k(sch, block, axes, plan)
            return Scheduled(sch, f"{shape}: {plan.describe()}")
        tiles = choose_tiles(axes, tuning)
        separate, b_constant_packed = _schedule_gemm(sch, block, axes, tiles)
        lanes = tuning.lanes(DTYPE_BYTES * 8)
        detail = f"{shape}: {tiles.describe(axes, lanes, b_constant_packed)}"
        if separate:
            detail += f"; separate epilogue: {', '.join(separate)}"
        return Scheduled(sch, detail)


def _schedule_gemm(
    sch: Any, block: Any, axes: MatmulAxes, tiles: MatmulTiles
) -> tuple[list[str], bool]:
    """Loops: parallel over (batch, row task, column tile); in each task the B panel is packed
    (a constant B is packed once, at compile time, instead), then for each row tile the C tile
    is zeroed, accumulated over all of K with the rows unrolled and the columns vectorized, and
    written back through the epilogue. Returns the epilogue blocks left as separate loop nests,
    and whether B was packed at compile time."""
    b_buffer = sch.get(block).reads[axes.b_read].source
    padding = tiles.padding(axes)
    a_pad = b_pad = None
    if padding is not None:
        sch.pad_einsum(block, padding)
        for producer in sch.get_producers(block):
            if sch.get(producer).reads[0].source.same_as(b_buffer):
                b_pad = producer
            else:
                a_pad = producer
        _inline_epilogue(sch, block)
    b_constant_packed = b_pad is None and _pack_constant_b(sch, block, axes, b_buffer, tiles)

    loops = sch.get_loops(block)
    batch = [loops[i] for i in axes.batch]
    rows = [loops[i] for i in axes.rows]
    column, reduction = loops[axes.column], loops[axes.reduction]
    sch.reorder(*batch, *rows, column, reduction)
    column_tile, column_inner = sch.split(column, [None, tiles.columns])
    if rows:
        fused_rows = sch.fuse(*rows) if len(rows) > 1 else rows[0]
        row_task, row_tile, row_inner = sch.split(
            fused_rows, [None, tiles.task_rows // tiles.rows, tiles.rows]
        )
        sch.reorder(*batch, row_task, column_tile, row_tile, reduction, row_inner, column_inner)
        outer = [*batch, row_task, column_tile]
    else:
        sch.reorder(*batch, column_tile, reduction, column_inner)
        outer = [*batch, column_tile]
    task = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    sch.parallel(task)
    tile_loop = row_tile if rows else task

    writer = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(writer, tile_loop)
    sch.vectorize(sch.get_loops(writer)[-1])
    separate = _fuse_epilogue(sch, writer, tile_loop)

    if tiles.pack and not b_constant_packed:
        panel = b_pad if b_pad is not None else sch.cache_read(block, axes.b_read, "global")
        sch.compute_at(panel, task)
        if axes.b_column_innermost:
            sch.vectorize(sch.get_loops(panel)[-1])
        else:
            sch.transform_layout(panel, ("write", 0), _column_last(axes, b_buffer))
    if a_pad is not None:
        sch.compute_at(a_pad, task)

    sch.vectorize(column_inner)
    if rows:
        sch.unroll(row_inner)
    sch.decompose_reduction(block, reduction)  # the zeroing loops inherit the unroll/vectorize
    return separate, b_constant_packed


def _pack_constant_b(
    sch: Any, block: Any, axes: MatmulAxes, b_buffer: Any, tiles: MatmulTiles
) -> bool:
    """A constant B (a layer's weights) read from a copy in column panels, [N / columns][the
    other dimensions][columns], made at compile time: each task's panel is then contiguous as
    stored, with no copy per task at run time (for a few rows of A, that copy moved more bytes
    than the product). False for a B computed at run time."""
    reads = sch.get(block).reads
    index = next(i for i, read in enumerate(reads) if read.source.same_as(b_buffer))
    moved, columns = axes.b_column_dim, tiles.columns

    def panels(*indices: Any) -> list[Any]:
        others = [value for i, value in enumerate(indices) if i != moved]
        return [indices[moved] // columns, *others, indices[moved] % columns]

    return read_constant_in_layout(sch, block, index, panels)


def _column_last(axes: MatmulAxes, b_buffer: Any) -> Any:
    """Index map of the B panel that moves the column dimension innermost, so the micro-kernel
    loads it as contiguous vectors."""
    import tvm

    moved = axes.b_column_dim

    def permute(*indices: Any) -> list[Any]:
        return [index for i, index in enumerate(indices) if i != moved] + [indices[moved]]

    return tvm.tirx.IndexMap.from_func(permute, ndim=len(b_buffer.shape))


def _schedule_split_k(sch: Any, block: Any, axes: MatmulAxes, plan: SplitKPlan) -> None:
    """rfactor K into parallel partial sums; each part walks its rows of B in order (the
    hardware prefetcher streams them), adding `k_unroll` rows into every row's partial sums per
    pass, each B vector loaded once for all the rows. Summing the parts and the epilogue are
    O(M N) loops left after it."""
    part, _ = sch.split(sch.get_loops(block)[axes.reduction], [plan.parts, None])
    partial = sch.rfactor(part, factor_axis=0)
    # The partial sums' loops are the block's, with the reduction's replaced by the two parts.
    loops = sch.get_loops(partial)
    part, k_in_part = loops[axes.reduction], loops[axes.reduction + 1]
    del loops[axes.reduction]
    batch = [loops[i] for i in axes.batch]
    rows = [loops[i] for i in axes.rows]
    column = loops[axes.column]
    k_pass, k_unrolled = sch.split(k_in_part, [None, plan.k_unroll])
    column_outer, column_inner = sch.split(column, [None, plan.width])
    sch.reorder(part, *batch, k_pass, column_outer, *rows, k_unrolled, column_inner)
    sch.parallel(part)
    for loop in (*rows, k_unrolled):
        sch.unroll(loop)
    sch.vectorize(column_inner)
    sch.decompose_reduction(partial, k_pass)
