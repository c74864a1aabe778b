"""2-D convolution with its elementwise epilogue (bias, residual, ReLU), in the NHWC activations
and HWIO weights `pipeline.fused_module` converts every convolution to, as a direct convolution
the x86 way: a tile of output pixels (in one row) x output channels stays in vector registers
(channels vectorized, pixels unrolled) over the whole window and every input channel, then goes
through the epilogue straight from the registers to the output. Constant weights are packed at
compile time so that each tile's weights are one contiguous stream. Tasks are rows of output when
the weights fit in L2 (each core streams its input rows once past weights that stay cached), or
parts of the output channels when they do not (each core streams its share of the weights once).
Zero padding stays a separate, parallel copy of the input. Grouped convolutions keep each
register tile inside one group (its input is still a broadcast); in a depthwise one each output
channel reads its own input channel, a vector load instead."""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import Any

from targets.tvm_schedules.analysis import (
    DTYPE_BYTES,
    around_the_reduction,
    divisors,
    kernel_extents,
    largest_divisor_at_most,
    read_constant_in_layout,
    vector_registers,
)
from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import Declined, Scheduled, ScheduleRule

# A task's rows hold at least this many register tiles, so that its work outweighs handing it
# to a thread.
TILES_PER_TASK = 4
# Registers outside the accumulators: one broadcast input value (plus the tile's weight vectors).
BROADCAST_REGISTERS = 1


@dataclass(frozen=True)
class ConvShape:
    """The convolution block's extents: out[n, y, x, f] += in[n, y*s + ry, x*s + rx, c] *
    w[ry, rx, c, f] (any stride or dilation: only the extents matter here)."""

    batch: int
    height: int  # of the output
    width: int
    out_channels: int
    kernel_height: int
    kernel_width: int
    in_channels: int  # per group
    weight_bytes: int
    groups: int
    # The register tile's output channels must lie in one run of this many channels that read
    # the same input channels: F for a plain or a depthwise convolution, F / groups otherwise.
    channel_run: int
    # Bytes between the input pixels that neighbouring output pixels of a row read (the input's
    # channels x 4 bytes x the stride); 0 when unknown.
    pixel_pitch: int = 0

    @property
    def rows(self) -> int:
        """Output rows over the whole batch: the axis tasks are cut along."""
        return self.batch * self.height


@dataclass(frozen=True)
class ConvPlan:
    """Register tile `pixels` (of one output row) x (`vectors` x `lanes` channels); tasks of
    `rows_per_task` output rows x 1/`channel_parts` of the output channels, ordered channel part
    first when `weights_outer`."""

    lanes: int
    vectors: int
    pixels: int
    rows_per_task: int
    channel_parts: int
    weights_outer: bool
    tasks: int


def _register_tiles(
    run: int, lanes: int, registers: int, most_pixels: int
) -> list[tuple[int, int]]:
    """Every (pixels, vectors) whose accumulators fit beside the step's weight vectors and its
    broadcast input, the most accumulators first, then the most vectors (fewer loads per FMA).
    At most half the registers' worth of pixels (a bounded unrolled body); with few pixels to
    cover (a 1x1 output) the accumulators spread along the channels instead."""
    tiles = []
    for vectors in range(1, registers):
        if run % (vectors * lanes):
            continue
        room = (registers - vectors - BROADCAST_REGISTERS) // vectors
        pixels = min(room, registers // 2, most_pixels)
        if pixels >= 1:
            tiles.append((pixels, vectors))
    return sorted(tiles, key=lambda tile: (tile[0] * tile[1], tile[1]), reverse=True)


def _task_rows_candidates(shape: ConvShape) -> list[int]:
    """Row counts a task may cover: whole images or a divisor of one image's rows, so that each
    task's output is a box (the epilogue is computed over it)."""
    within = divisors(shape.height)
    across = [shape.height * d for d in divisors(shape.batch)[1:]]
    return within + across


def _fit_pixels(pixels: int, width: int) -> int:
    """The register tile's pixel count along an output row of `width`: all of them when fewer,
    else a divisor of at least half `pixels` (no partial tile, whose predicate would keep the
    accumulators out of registers), else `pixels` with a partial last tile."""
    if width <= pixels:
        return width
    close = [d for d in divisors(width) if pixels <= 2 * d <= 2 * pixels]
    return max(close) if close else pixels


def _most_pixels(shape: ConvShape, tuning: CpuTuning) -> int:
    """Pixels a register tile may span: the row, but fewer than the L1's ways when the input
    pixels it reads lie a multiple of the L1 set span apart (1024 input channels: 4 KiB). Those
    all fall in one set, and more of them than it has ways evict each other on every step
    (14 pixels of a 1x1 conv over 1024 channels run about a fifth slower than 7)."""
    aliased = shape.pixel_pitch > 0 and shape.pixel_pitch % tuning.l1_set_span == 0
    return min(shape.width, tuning.l1_ways - 1) if aliased else shape.width


def _row_tile(tiles: list[tuple[int, int]], width: int) -> tuple[int, int]:
    """Of `tiles`, with their pixels fitted to the row, the most accumulators (then vectors),
    counting a tile that leaves a partial last tile at half: the partial tile's predicate keeps
    the accumulators of every tile out of registers (a 7-pixel row: 7 x 2 vectors runs about a
    third faster than 6 x 4 with a partial tile)."""
    fitted = [(_fit_pixels(pixels, width), vectors) for pixels, vectors in tiles]

    def worth(tile: tuple[int, int]) -> tuple[float, int]:
        pixels, vectors = tile
        return pixels * vectors * (1.0 if width % pixels == 0 else 0.5), vectors

    return max(fitted, key=worth)


def choose_plan(shape: ConvShape, tuning: CpuTuning) -> ConvPlan:
    """The register tile from the register file and the output width, the tasks from where the
    weights fit (L2) and the core count."""
    lanes = gcd(shape.channel_run, tuning.lanes(DTYPE_BYTES * 8))
    registers = vector_registers(tuning)
    tiles = _register_tiles(shape.channel_run, lanes, registers, _most_pixels(shape, tuning))
    weights_outer = shape.weight_bytes > tuning.l2_bytes // 2
    if weights_outer:
        # The cores split the output channels: prefer a tile that splits them evenly.
        even = [t for t in tiles if (shape.out_channels // (t[1] * lanes)) % tuning.cores == 0]
        tiles = even or tiles
    pixels, vectors = _row_tile(tiles, shape.width)
    tile_channels = vectors * lanes
    channel_tiles = shape.out_channels // tile_channels

    candidates = _task_rows_candidates(shape)
    if weights_outer:
        # Each core takes its share of the output channels and as many rows as keep the task's
        # sums in L2, so the weights are read about once.
        channel_parts = largest_divisor_at_most(channel_tiles, tuning.cores)
        row_bytes = shape.width * (shape.out_channels // channel_parts) * DTYPE_BYTES
        fitting = [r for r in candidates if r * row_bytes <= tuning.l2_bytes // 4]
        balanced = [r for r in fitting if channel_parts * (shape.rows // r) >= tuning.cores]
        rows_per_task = max(balanced or fitting or [1])
    else:
        # The weights stay in L2: a task is a few rows of every output channel (each pixel tile
        # goes through all the channel tiles while its input is in L1, and writes whole cache
        # lines of output); the channels are split too only when there are fewer rows than
        # cores, and the rows fewer when that leaves a core idle.
        channel_parts = 1 if shape.rows >= tuning.cores else channel_tiles
        wide = [r for r in candidates if r * shape.width >= TILES_PER_TASK * pixels]
        rows_per_task = min(wide or [shape.rows])
        if channel_parts * (shape.rows // rows_per_task) < tuning.cores:
            busy = [r for r in candidates if channel_parts * (shape.rows // r) >= tuning.cores]
            rows_per_task = max(busy or [rows_per_task])
    tasks = channel_parts * (shape.rows // rows_per_task)
    return ConvPlan(
        lanes,
        vectors,
        pixels,
        rows_per_task,
        channel_parts,
        weights_outer,
        tasks,
    )


@dataclass(frozen=True)
class ConvBlocks:
    """The convolution block, the padding block feeding it (None when the input is read as
    is), and the blocks after it."""

    conv: Any
    pad: Any
    epilogue: list[Any]


def _uses(index: Any, var: Any) -> bool:
    """`var` appears in the index expression."""
    from tvm.tirx.analysis import undefined_vars

    return any(v.same_as(var) for v in undefined_vars(index))


def conv_shape(sch: Any, block_rv: Any) -> ConvShape | str:
    """The extents of an NHWC x HWIO convolution block, or why the block is not one."""
    import tvm

    block = sch.get(block_rv)
    iters = list(block.iter_vars)
    kinds = "".join("S" if iv.iter_type == tvm.tirx.IterVar.DataPar else "R" for iv in iters)
    if kinds != "SSSSRRR":
        return f"iterators {kinds}, not the convolution's SSSSRRR"
    extents = kernel_extents(block, "out += input * weight")
    if isinstance(extents, str):
        return extents
    for region in (*block.reads, *block.writes):
        if len(region.region) != 4:
            return f"{region.source.name} is not 4-D"
    n, y, x, f, ry, rx, rc = (iv.var for iv in iters)
    out = [r.min for r in block.writes[0].region]
    if not all(i.same_as(v) for i, v in zip(out, (n, y, x, f), strict=True)):
        return "the output is not indexed [n, y, x, f]"
    weight = _weight_read(block)
    if weight is None:
        return "no weight read indexed [ry, rx, c, f] (HWIO)"
    data = next(r for i, r in enumerate(block.reads) if i != weight)
    rows, cols, channel = data.region[1].min, data.region[2].min, data.region[3].min
    stride = tvm.sym.detect_linear_equation(cols, [x])
    if not data.region[0].min.same_as(n):
        return "the input is not indexed by the batch first (NHWC)"
    grouping = _grouping(channel, f, rc, extents[3])
    if grouping is None:
        return f"input channel index {channel} is not c, f + c or f // (F / groups) * C + c"
    if not (_uses(rows, y) and _uses(rows, ry) and _uses(cols, x) and _uses(cols, rx)):
        return "the input's H and W are not indexed by the output position and the window"
    return ConvShape(
        batch=extents[0],
        height=extents[1],
        width=extents[2],
        out_channels=extents[3],
        kernel_height=extents[4],
        kernel_width=extents[5],
        in_channels=extents[6],
        weight_bytes=extents[3] * extents[4] * extents[5] * extents[6] * DTYPE_BYTES,
        groups=grouping[0],
        channel_run=grouping[1],
        pixel_pitch=(
            int(stride[0]) * int(data.source.shape[3]) * DTYPE_BYTES
            if stride and isinstance(stride[0], tvm.tirx.IntImm)
            else 0
        ),
    )


def _weight_read(block: Any) -> int | None:
    """Which of the convolution block's reads is the only one indexed [ry, rx, c, f] (HWIO)."""
    _, _, _, f, ry, rx, rc = (iv.var for iv in block.iter_vars)
    found = [
        index
        for index, read in enumerate(block.reads)
        if len(read.region) == 4
        and all(d.min.same_as(v) for d, v in zip(read.region, (ry, rx, rc, f), strict=True))
    ]
    return found[0] if len(found) == 1 else None


def _grouping(channel: Any, f: Any, rc: Any, out_channels: int) -> tuple[int, int] | None:
    """(groups, channel run) from the input's channel index: `c` for a plain convolution, `f + c`
    for a depthwise one (each output channel reads its own input channel: a vector load), `f //
    (F / groups) * C + c` for a grouped one (the channels of a group share a broadcast input)."""
    import tvm

    if channel.same_as(rc):
        return 1, out_channels
    if not isinstance(channel, tvm.tirx.Add) or not channel.b.same_as(rc):
        return None
    base = channel.a
    if base.same_as(f):
        return out_channels, out_channels
    if isinstance(base, tvm.tirx.Mul) and isinstance(base.b, tvm.tirx.IntImm):
        base = base.a
    if (
        isinstance(base, tvm.tirx.FloorDiv)
        and base.a.same_as(f)
        and isinstance(base.b, tvm.tirx.IntImm)
        and out_channels % int(base.b) == 0
    ):
        return out_channels // int(base.b), int(base.b)
    return None


def _find_blocks(sch: Any) -> ConvBlocks | str:
    """The one reduction block, the spatial blocks before it (padding) and after it (the
    epilogue), or why the function does not have that form."""
    found = around_the_reduction(sch, "convolution")
    if isinstance(found, str):
        return found
    before, conv, after = found
    if len(before) > 1:
        return f"{len(before)} blocks before the convolution (at most a padding one expected)"
    return ConvBlocks(conv, before[0] if before else None, after)


def _is_copy(sch: Any, block_rv: Any) -> bool:
    """The padding block reads its input as is (zero padding, nothing to pad)."""
    import tvm

    body = sch.get(block_rv).body
    return isinstance(body, tvm.tirx.BufferStore) and isinstance(body.value, tvm.ir.expr.TensorLoad)


class Conv2dRule(ScheduleRule):
    name = "conv2d"

    def schedule(self, sch: Any, tuning: CpuTuning) -> Scheduled | Declined:
        blocks = _find_blocks(sch)
        if isinstance(blocks, str):
            return Declined(blocks)
        shape = conv_shape(sch, blocks.conv)
        if isinstance(shape, str):
            return Declined(shape)
        plan = choose_plan(shape, tuning)
        return Scheduled(sch, _schedule_conv(sch, blocks, shape, plan))


def _schedule_conv(sch: Any, blocks: ConvBlocks, shape: ConvShape, plan: ConvPlan) -> str:
    """Loops: parallel over tasks; in each, the register tiles of its rows and channel tiles,
    each summing its window and every input channel into a local tile (pixels unrolled,
    channels vectorized) that is written back through the epilogue. The tile lies in
    one row so that the write-back covers exactly the tile: over a tile that crossed rows TVM
    would write back a box of whole rows. An epilogue that is not elementwise makes a primitive
    raise (the rule then declines)."""
    conv = blocks.conv
    epilogue_names = [sch.get(b).name_hint for b in blocks.epilogue]
    padded = blocks.pad is not None and not _is_copy(sch, blocks.pad)
    if blocks.pad is not None and not padded:
        sch.compute_inline(blocks.pad)
    for block in blocks.epilogue[:-1]:
        sch.compute_inline(block)
    last = blocks.epilogue[-1] if blocks.epilogue else None
    packed = _pack_weights(sch, conv, plan.vectors * plan.lanes)

    n, y, x, f, ry, rx, rc = sch.get_loops(conv)
    # Images and rows are split apart, not fused then split: for a fixed row of a task, TVM can
    # then prove which image and row a tile is in, so its write-back covers exactly the tile.
    if plan.rows_per_task <= shape.height:  # a divisor of one image's rows
        row_task, task_rows = sch.split(y, [None, plan.rows_per_task])
        row_loops: tuple[Any, ...] = (n, row_task)
    else:  # whole images
        image, images = sch.split(n, [None, plan.rows_per_task // shape.height])
        task_rows = sch.fuse(images, y)
        row_loops = (image,)
    part, channel_tile, vector, lane = sch.split(
        f, [plan.channel_parts, None, plan.vectors, plan.lanes]
    )
    pixel_tile, pixel = sch.split(x, [None, plan.pixels])
    outer = (part, *row_loops) if plan.weights_outer else (*row_loops, part)
    # Weights outer: a channel tile's weights serve every pixel of the task; rows outer: a pixel
    # tile's input serves every channel tile.
    tiles = (channel_tile, task_rows, pixel_tile)
    if not plan.weights_outer:
        tiles = (task_rows, pixel_tile, channel_tile)
    sch.reorder(*outer, *tiles, ry, rx, rc, pixel, vector, lane)
    task = sch.fuse(*outer)
    sch.parallel(task)

    tile = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(tile, pixel_tile)
    if last is not None:
        sch.reverse_compute_inline(last)
    sch.vectorize(sch.get_loops(tile)[-1])
    sch.unroll(pixel)
    sch.unroll(vector)
    sch.vectorize(lane)
    sch.decompose_reduction(conv, ry)
    if padded:
        _schedule_padding(sch, blocks.pad, plan.lanes)

    kernel = f"{shape.kernel_height}x{shape.kernel_width}"
    return (
        f"{kernel} conv N={shape.batch} {shape.height}x{shape.width} "
        f"C={shape.in_channels * shape.groups}->F={shape.out_channels}"
        f"{f' in {shape.groups} groups' if shape.groups > 1 else ''}: "
        f"register tile {plan.pixels} pixels x "
        f"{plan.vectors}x{plan.lanes} channels, {plan.tasks} parallel tasks of "
        f"{plan.rows_per_task} rows x "
        f"{shape.out_channels // plan.channel_parts} channels "
        f"({'weights' if plan.weights_outer else 'rows'} outer), "
        f"padding {'a separate copy' if padded else 'inlined'}, "
        f"weights {'packed per channel tile at compile time' if packed else 'as stored (HWIO)'}"
        f"{', epilogue ' + '+'.join(epilogue_names) if epilogue_names else ''}"
    )


def _pack_weights(sch: Any, conv: Any, tile_channels: int) -> bool:
    """Constant weights read from a copy laid out [F / tile][ry][rx][c][tile]: a register
    tile's weights are then one contiguous run instead of a `tile`-wide slice of every HWIO row
    (rows F floats apart, so a new page every row or two once the weights outgrow L2). Returns
    whether it packed (not for weights computed at run time)."""
    index = _weight_read(sch.get(conv))
    return index is not None and read_constant_in_layout(
        sch,
        conv,
        index,
        lambda ry, rx, c, f: (f // tile_channels, ry, rx, c, f % tile_channels),
    )


def _schedule_padding(sch: Any, pad: Any, lanes: int) -> None:
    """The zero-padded input copy: parallel over rows, vectorized over channels."""
    loops = sch.get_loops(pad)
    sch.parallel(sch.fuse(*loops[:2]))
    channels = int(sch.get(loops[-1]).extent)
    if channels % lanes == 0:
        _, lane = sch.split(loops[-1], [None, lanes])
        sch.vectorize(lane)
