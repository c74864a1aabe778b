"""One reduction (sum, mean, max... over one or more axes; a pooling window) with elementwise
blocks before and after it: the kept axes run in parallel, and the vectors go along whichever
axis the input is contiguous in. A kept axis (NHWC pooling and global means: the channels) gives
plain vector accumulators; a reduced axis gives a vectorized reduction through rfactor (partial
sums per vector lane, added up once per output)."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

from targets.tvm_schedules.analysis import (
    block_loops,
    contiguous_axis,
    estimated_operations,
    inline_injective,
    is_contraction,
    largest_divisor_at_most,
    moved_bytes,
    parallelize,
    reduction_width,
    static_extents,
    vector_width,
    vectorize_inner,
    worth_parallel,
    write_dtype_bits,
)
from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import BlockRule, Declined, Scheduled

# Accumulators along a kept axis (a row of channels) use at most this fraction of L1, leaving the
# rest to the input lines streaming through.
L1_FRACTION_FOR_ACCUMULATORS = 4


@dataclass(frozen=True)
class ReductionLayout:
    """What `vectorize_reduction` did: `vector` elements per vector operation, `along`
    "kept" (vectors over an output axis), "reduced" (rfactor) or "none" (scalar loops);
    `kept_loops` the loops over the kept axes, outermost first (the reduction runs under the
    last); `updates` the (reduction block, its outermost reduction loop) pairs whose
    initialization `finish_reduction` splits off."""

    vector: int
    along: str
    kept_loops: tuple[Any, ...]
    updates: tuple[tuple[Any, Any], ...]

    def describe(self) -> str:
        if self.along == "none":
            return "scalar reduction"
        return f"vector {self.vector} along the {self.along} axis"


def vectorize_reduction(sch: Any, block: Any, tuning: CpuTuning) -> ReductionLayout:
    """Lay out a reduction block: its kept (spatial) loops outside, the reduction under them,
    vectorized along the input's contiguous axis when there is one. The caller may compute
    other blocks at, or parallelize, the kept loops, and ends with `finish_reduction`."""
    from tvm import tirx

    stmt = sch.get(block)
    loops, extents, lanes = block_loops(sch, block, tuning)
    kinds = [iter_var.iter_type for iter_var in stmt.iter_vars]
    kept = [i for i, kind in enumerate(kinds) if kind == tirx.IterVar.DataPar]
    reduced = [i for i, kind in enumerate(kinds) if kind == tirx.IterVar.CommReduce]
    contiguous = contiguous_axis(stmt)

    if contiguous in kept and vector_width(extents[contiguous], lanes) > 1:
        # The reduction loops go outside the contiguous kept axis: the input streams through
        # in memory order into a block of accumulators that stays in L1.
        width = vector_width(extents[contiguous], lanes)
        vectors = extents[contiguous] // width
        vector_bytes = width * write_dtype_bits(sch, block) // 8
        budget = tuning.l1_bytes // L1_FRACTION_FOR_ACCUMULATORS
        per_block = largest_divisor_at_most(vectors, max(1, budget // vector_bytes))
        blocks, block_vectors, vector = sch.split(
            loops[contiguous], factors=[None, per_block, width]
        )
        kept_loops = [loops[i] for i in kept if i != contiguous] + [blocks]
        sch.reorder(*kept_loops, *[loops[i] for i in reduced], block_vectors, vector)
        sch.vectorize(vector)
        updates = ((block, loops[reduced[0]]),)
        return ReductionLayout(width, "kept", tuple(kept_loops), updates)

    kept_loops = [loops[i] for i in kept]
    reduced_loops = [loops[i] for i in reduced]
    if contiguous in reduced:
        # The contiguous reduced axis goes innermost, the others (a window, leading axes)
        # outside it, so that the vector loads are contiguous.
        reduced_loops.remove(loops[contiguous])
        reduced_loops.append(loops[contiguous])
    sch.reorder(*kept_loops, *reduced_loops)
    width = reduction_width(extents[contiguous], lanes) if contiguous in reduced else 1
    if width == 1:
        return ReductionLayout(1, "none", tuple(kept_loops), ())
    _, lane = sch.split(reduced_loops[-1], factors=[None, width])
    partial = sch.rfactor(lane, factor_axis=len(kept))
    partial_loops = sch.get_loops(partial)
    sch.vectorize(partial_loops[-1])
    sch.reverse_compute_at(block, partial_loops[len(kept) - 1])
    updates = ((partial, partial_loops[len(kept)]),)
    return ReductionLayout(width, "reduced", tuple(partial_loops[: len(kept)]), updates)


def finish_reduction(sch: Any, layout: ReductionLayout) -> None:
    """Split each vectorized reduction's initialization off into its own vector loop (last:
    a reduction without its init is no longer one that parallel or compute_at accept)."""
    for block, loop in layout.updates:
        init = sch.decompose_reduction(block, loop)
        sch.vectorize(sch.get_loops(init)[-1])


def _consumes(sch: Any, consumer: Any, producer: Any) -> bool:
    return any(sch.get(block).same_as(sch.get(consumer)) for block in sch.get_consumers(producer))


class ReductionRule(BlockRule):
    name = "reduction"

    def schedule_nest(self, sch: Any, infos: list[Any], tuning: CpuTuning) -> Scheduled | Declined:
        from tvm import tirx

        reductions = [info for info in infos if not info.is_injective()]
        if len(reductions) != 1:
            return Declined(f"{len(reductions)} reduction blocks, not one")
        reduction = reductions[0]
        if set(reduction.dom_kind()) - {"S", "R"}:
            return Declined(
                f"block {reduction.name} has iterators that are neither kept nor reduced"
            )
        if not isinstance(sch.get(reduction.block_rv).body, tirx.BufferStore):
            return Declined(f"block {reduction.name} stores several values (an arg-reduction)")
        if "S" not in reduction.dom_kind():
            return Declined(f"block {reduction.name} reduces everything to one value")
        if is_contraction(sch.get(reduction.block_rv)):
            return Declined(f"block {reduction.name} is a contraction (matmul or convolution)")
        for info in infos:
            if static_extents(sch, info.get_loops()) is None:
                return Declined(f"block {info.name} has a loop of dynamic extent")
        others = inline_injective(sch, [info.block_rv for info in infos if info is not reduction])
        block = reduction.block_rv
        if len(others) > 1 or any(not _consumes(sch, other, block) for other in others):
            names = ", ".join(sch.get(other).name_hint for other in others)
            return Declined(f"blocks {names} are not one elementwise epilogue of the reduction")
        outputs = prod(int(dim) for dim in sch.get(block).writes[0].source.shape)
        for other in others:
            if prod(static_extents(sch, sch.get_loops(other)) or []) != outputs:
                return Declined(
                    f"epilogue {sch.get(other).name_hint} does not map one to one onto the "
                    "reduced values"
                )
        operations = estimated_operations(sch, [block, *others])
        parallel = worth_parallel(moved_bytes(sch, [block, *others]), operations, tuning)
        layout = vectorize_reduction(sch, block, tuning)
        epilogue = ""
        for other in others:
            sch.reverse_compute_at(other, layout.kept_loops[-1])
            width = vectorize_inner(sch, other, tuning, len(layout.kept_loops))
            epilogue = f"; epilogue {sch.get(other).name_hint} vector {width}"
        if parallel:
            parallelize(sch, list(layout.kept_loops), tuning)
        finish_reduction(sch, layout)
        threads = "parallel" if parallel else "serial"
        return Scheduled(sch, f"{reduction.name}: {threads}, {layout.describe()}{epilogue}")
