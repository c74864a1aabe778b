"""The two transforms of a Winograd convolution (`winograd`), with what fused around them (the
padding and layout copies before the input transform, the convolution's epilogue after the
output transform) inlined. Both unroll the 4x4 tile, so that the transform matrices' selects
fold to a few adds, and vectorize the channels:

- input: parallel over output tiles; per vector of input channels, the 16 loads of the tile
  serve the 16 transformed values.
- output: parallel over rows of output tiles; per vector of output channels, the 2x2 outputs of
  a tile each sum 9 of its 16 products, then go through the epilogue."""

from __future__ import annotations

from typing import Any

from targets.tvm_schedules.analysis import (
    inline_injective,
    parallelize,
    root_blocks,
    static_extents,
    vector_width,
)
from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import Declined, Scheduled, ScheduleRule
from targets.tvm_schedules.winograd import INPUT_BLOCK, OUT, OUTPUT_BLOCK


class WinogradRule(ScheduleRule):
    name = "winograd"

    def schedule(self, sch: Any, tuning: CpuTuning) -> Scheduled | Declined:
        names = {sch.get(block).name_hint: block for block in root_blocks(sch)}
        kind = next((n for n in (INPUT_BLOCK, OUTPUT_BLOCK) if n in names), None)
        if kind is None:
            return Declined(f"no {INPUT_BLOCK} or {OUTPUT_BLOCK} block")
        others = [b for n, b in names.items() if n != kind]
        if inline_injective(sch, others):
            return Declined(f"blocks besides {kind} that do not inline into it")
        block = sch.get_sblock(kind)
        loops = sch.get_loops(block)
        extents = static_extents(sch, loops)
        if extents is None:
            return Declined("a loop of dynamic extent")
        lanes = vector_width(extents[-1], tuning.lanes(32))
        if kind == INPUT_BLOCK:
            return Scheduled(sch, _input(sch, loops, lanes, tuning))
        return Scheduled(sch, _output(sch, loops, lanes, tuning))


def _input(sch: Any, loops: list[Any], lanes: int, tuning: CpuTuning) -> str:
    element, tile, channel = loops
    tiles, channels_total = (int(sch.get(loop).extent) for loop in (tile, channel))
    channels, vector = sch.split(channel, [None, lanes])
    sch.reorder(tile, channels, element, vector)
    parallelize(sch, [tile], tuning)
    sch.unroll(element)
    sch.vectorize(vector)
    return (
        f"input transform of {tiles} tiles x {channels_total} channels: parallel over tiles, "
        f"the 4x4 tile unrolled, vector {lanes}"
    )


def _output(sch: Any, loops: list[Any], lanes: int, tuning: CpuTuning) -> str:
    n, y, x, f = loops
    shape = "x".join(str(int(sch.get(loop).extent)) for loop in loops)
    rows, row = sch.split(y, [None, OUT])
    cols, col = sch.split(x, [None, OUT])
    channels, vector = sch.split(f, [None, lanes])
    sch.reorder(n, rows, cols, channels, row, col, vector)
    parallelize(sch, [n, rows], tuning)
    sch.unroll(row)
    sch.unroll(col)
    sch.vectorize(vector)
    return (
        f"output transform to NHWC {shape}: parallel over rows of tiles, the 2x2 outputs "
        f"unrolled, vector {lanes}"
    )
