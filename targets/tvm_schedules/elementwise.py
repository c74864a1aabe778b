"""Injective functions (elementwise arithmetic, casts, selects, gathers, reshapes, transposes):
everything inlined into the output block, whose innermost loop is split into vectors of the
output's contiguous elements (a transpose is tiled instead, vectors along the input's contiguous
axis), the loops above it run in parallel when the work pays for the threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from targets.tvm_schedules.analysis import (
    block_loops,
    contiguous_axis,
    estimated_operations,
    inline_injective,
    moved_bytes,
    parallelize,
    static_extents,
    vector_width,
    worth_parallel,
)
from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import BlockRule, Declined, Scheduled


@dataclass(frozen=True)
class Vectorized:
    """How one block's spatial loops were laid out: `vector` elements per vector operation
    (1: none), `parallel` whether the outer loop runs on several threads, `transposed` whether
    the vectors run along an input axis other than the output's innermost."""

    vector: int
    parallel: bool
    transposed: bool

    def describe(self) -> str:
        threads = "parallel" if self.parallel else "serial"
        vector = f"vector {self.vector}" if self.vector > 1 else "scalar"
        return f"{threads}, {vector}" + (", transpose tiles" if self.transposed else "")


def transposed_axis(block_stmt: Any) -> int | None:
    """The input's contiguous axis when it is not the output's innermost one: a transpose."""
    axis = contiguous_axis(block_stmt)
    return None if axis == len(block_stmt.iter_vars) - 1 else axis


def vectorize_spatial(sch: Any, block: Any, tuning: CpuTuning, parallel: bool) -> Vectorized:
    """Lay out a block whose loops are all spatial, one loop per block axis. A transpose is
    tiled: vectors along the input's contiguous axis (scattered stores), an unrolled tile of the
    output's innermost axis around them, so both sides use whole cache lines. Otherwise the
    innermost loops, fused until they fill a vector, are split into vectors. The loops above run
    in parallel when asked."""
    loops, extents, lanes = block_loops(sch, block, tuning)
    if not loops:  # one scalar: nothing to lay out
        return Vectorized(1, False, False)
    axis = transposed_axis(sch.get(block))
    if axis is not None and vector_width(extents[axis], lanes) > 1:
        width = vector_width(extents[axis], lanes)
        tile = extents[-1] if extents[-1] <= lanes else vector_width(extents[-1], lanes)
        across_outer, across = sch.split(loops[axis], factors=[None, width])
        along_outer, along = sch.split(loops[-1], factors=[None, tile])
        outer_loops = [loop for i, loop in enumerate(loops[:-1]) if i != axis]
        outer_loops += [across_outer, along_outer]
        sch.reorder(*outer_loops, along, across)
        sch.unroll(along)
        sch.vectorize(across)
        return _parallel_if(sch, outer_loops, tuning, parallel, Vectorized(width, parallel, True))
    if axis is not None:
        # A transpose whose input axis does not split into vectors: vectors along the output
        # would gather from as many cache lines as lanes, slower than scalar copies.
        return _parallel_if(sch, list(loops), tuning, parallel, Vectorized(1, parallel, True))
    inner_count, inner_extent = 1, extents[-1]
    while inner_extent < lanes and inner_count < len(loops):
        inner_count += 1
        inner_extent *= extents[-inner_count]
    width = vector_width(inner_extent, lanes)
    inner = sch.fuse(*loops[-inner_count:]) if inner_count > 1 else loops[-1]
    outer_loops = list(loops[:-inner_count])
    if width > 1:
        inner_outer, vector = sch.split(inner, factors=[None, width])
        sch.vectorize(vector)
        outer_loops.append(inner_outer)
    else:
        outer_loops.append(inner)
    return _parallel_if(sch, outer_loops, tuning, parallel, Vectorized(width, parallel, False))


def _parallel_if(
    sch: Any, loops: list[Any], tuning: CpuTuning, parallel: bool, layout: Vectorized
) -> Vectorized:
    if parallel:
        parallelize(sch, loops, tuning)
    return layout


class ElementwiseRule(BlockRule):
    name = "elementwise"

    def schedule_nest(self, sch: Any, infos: list[Any], tuning: CpuTuning) -> Scheduled | Declined:
        from tvm import tirx

        if any("R" in info.dom_kind() for info in infos):
            return Declined("has a reduction block")
        if not all(info.is_injective() for info in infos):
            return Declined("has iterators that are neither spatial nor reduced")
        for info in infos:
            if static_extents(sch, info.get_loops()) is None:
                return Declined(f"block {info.name} has a loop of dynamic extent")
            if not isinstance(sch.get(info.block_rv).body, tirx.BufferStore):
                return Declined(f"block {info.name} is not one store (a scatter's inner loops)")
        blocks = inline_injective(sch, [info.block_rv for info in infos])
        operations = estimated_operations(sch, blocks)
        parallel = worth_parallel(moved_bytes(sch, blocks), operations, tuning)
        details = []
        for block in blocks:
            layout = vectorize_spatial(sch, block, tuning, parallel)
            details.append(f"{sch.get(block).name_hint}: {layout.describe()}")
        inlined = len(infos) - len(blocks)
        return Scheduled(sch, f"{inlined} blocks inlined; " + "; ".join(details))
