"""What several schedule rules ask of a PrimFunc and do to it: its blocks around a reduction,
the shape of a block (static extents and vector lanes, the contiguous axis, a contraction or a
multiply-accumulate, scalar library calls), the work estimate and the parallel decision, the
sizes tiles are cut to (divisors, vector widths, the register file), and the scheduling steps
they share (inlining, the parallel outer loop, the vectorized innermost split, reading a
constant in another layout)."""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

from targets.tvm_schedules.host_tuning import CpuTuning

# The one dtype the register-blocked kernels (matmul, conv2d) are written for, and its size.
SUPPORTED_DTYPE = "float32"
DTYPE_BYTES = 4
# Functions LLVM has no vector instruction for: it evaluates a vector of them as one scalar
# library call per lane, so vectorizing a block that calls them only adds the lane shuffles.
LIBM_FUNCTIONS = frozenset(
    {"exp", "exp2", "exp10", "log", "log2", "log10", "log1p", "pow", "erf", "tanh"}
    | {"sigmoid", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh"}
)
# What one such call costs, in arithmetic operations, for the work estimate.
LIBM_CALL_OPERATIONS = 20
# Waking the worker threads and joining them costs some microseconds: about as long as one core
# takes for this many scalar operations (some 16 thousand 16-lane vector instructions). Smaller
# functions run serially unless their data streams from beyond L2.
PARALLEL_MIN_OPERATIONS = 1 << 18
# Parallel loops get at least this many iterations per core so uneven ones balance out.
PARALLEL_CHUNKS_PER_CORE = 4
# Independent vector accumulators of a reduction along a contiguous axis: an add or max has a
# latency of about four cycles and two issue ports, so a single accumulator leaves most of the
# vector unit idle; four keep it busy without running out of registers.
ACCUMULATORS = 4


def root_blocks(sch: Any) -> list[Any]:
    """The function's top-level blocks, in order."""
    from tvm.s_tir.dlight.analysis import get_root_block

    return list(sch.get_child_blocks(get_root_block(sch)))


def around_the_reduction(sch: Any, kernel: str) -> tuple[list[Any], Any, list[Any]] | str:
    """The function's top-level blocks around its one reduction block: (the blocks before it,
    it, the blocks after it), or why there is not exactly one reduction block (also when a block
    has iterators that are neither spatial nor reduction); `kernel` names the block expected in
    that reason."""
    from tvm import tirx

    blocks = root_blocks(sch)
    reductions = []
    for index, block_rv in enumerate(blocks):
        kinds = {iv.iter_type for iv in sch.get(block_rv).iter_vars}
        if not kinds <= {tirx.IterVar.DataPar, tirx.IterVar.CommReduce}:
            return "a block has iterators that are neither spatial nor reduction"
        if tirx.IterVar.CommReduce in kinds:
            reductions.append(index)
    if len(reductions) != 1:
        return f"{len(reductions)} reduction blocks (one {kernel} expected)"
    at = reductions[0]
    return blocks[:at], blocks[at], blocks[at + 1 :]


def kernel_extents(block: Any, update: str) -> list[int] | str:
    """The iterators' extents of a block the register-blocked kernels (matmul, conv2d) take: a
    SUPPORTED_DTYPE multiply-accumulate of static extents; else why not (a dynamic extent, an
    update that is not the multiply-accumulate `update` spells, another dtype)."""
    from tvm import tirx

    extents = []
    for iv in block.iter_vars:
        if not isinstance(iv.dom.extent, tirx.IntImm):
            return f"dynamic extent {iv.dom.extent}"
        extents.append(int(iv.dom.extent))
    if not _is_multiply_accumulate(block):
        return f"the reduction is not {update}"
    for region in (*block.reads, *block.writes):
        if str(region.source.dtype) != SUPPORTED_DTYPE:
            return f"dtype {region.source.dtype} (only {SUPPORTED_DTYPE})"
    return extents


def _is_multiply_accumulate(block: Any) -> bool:
    """C = C + X * Y (C on either side of the sum), C initialised to 0, with two reads and one
    write; what X and Y read is left to the dtype and index checks."""
    import tvm

    if len(block.reads) != 2 or len(block.writes) != 1:
        return False
    body, init = block.body, block.init
    if not isinstance(body, tvm.tirx.BufferStore) or not isinstance(init, tvm.tirx.BufferStore):
        return False
    if not isinstance(init.value, tvm.tirx.FloatImm) or init.value.value != 0:
        return False
    if not isinstance(body.value, tvm.tirx.Add):
        return False
    return any(
        isinstance(accumulated, tvm.ir.expr.TensorLoad)
        and accumulated.source.same_as(body.buffer)
        and isinstance(product, tvm.tirx.Mul)
        for accumulated, product in ((body.value.a, body.value.b), (body.value.b, body.value.a))
    )


def static_extents(sch: Any, loops: list[Any]) -> list[int] | None:
    """Each loop's constant trip count, or None when one depends on a shape variable."""
    from tvm import tirx

    extents = []
    for loop in loops:
        extent = sch.get(loop).extent
        if not isinstance(extent, tirx.IntImm):
            return None
        extents.append(int(extent))
    return extents


def is_contraction(block_stmt: Any) -> bool:
    """A reduction whose update multiplies loads of two different buffers that both move with
    a reduction variable: a matmul, a convolution, a dot product (the matmul and conv2d rules'
    work, not a plain reduction's), whatever its initial value and however it combines the
    products."""
    from tvm import tirx

    reduce_vars = [
        iter_var.var
        for iter_var in block_stmt.iter_vars
        if iter_var.iter_type == tirx.IterVar.CommReduce
    ]
    if not reduce_vars or not isinstance(block_stmt.body, tirx.BufferStore):
        return False  # an argmax-style tuple reduction is several stores: not a contraction
    for node in _subexpressions(block_stmt.body.value):
        if isinstance(node, tirx.Mul):
            left = _reduced_loads(node.a, reduce_vars)
            right = _reduced_loads(node.b, reduce_vars)
            if any(not a.same_as(b) for a in left for b in right):
                return True
    return False


def _reduced_loads(expr: Any, reduce_vars: list[Any]) -> list[Any]:
    """The buffers `expr` loads at an index that moves with a reduction variable."""
    from tvm import tirx

    buffers: list[Any] = []
    for node in _subexpressions(expr):
        indices = getattr(node, "indices", None)
        source = getattr(node, "source", None)
        if indices is None or source is None:
            continue
        used = [v for index in indices for v in tirx.analysis.undefined_vars(index)]
        if any(u.same_as(r) for u in used for r in reduce_vars) and not any(
            source.same_as(b) for b in buffers
        ):
            buffers.append(source)
    return buffers


def contiguous_axis(block_stmt: Any) -> int | None:
    """The position of the block axis that walks the largest buffer the block reads with
    stride 1 (on its last index), or None when no axis does (a gather, a broadcast)."""
    import tvm

    if not isinstance(block_stmt.body, tvm.tirx.BufferStore):
        return None
    loads = [load for load in _loads(block_stmt.body.value) if len(load.indices) > 0]
    if not loads:  # nothing read, or only scalars
        return None
    dominant = max(loads, key=lambda load: _buffer_elements(load.source))
    analyzer = tvm.sym.Analyzer()
    for iter_var in block_stmt.iter_vars:
        analyzer.bind(iter_var.var, iter_var.dom)
    index = analyzer.simplify(dominant.indices[-1])
    for position, iter_var in enumerate(block_stmt.iter_vars):
        coefficients = tvm.sym.detect_linear_equation(index, [iter_var.var])
        if coefficients and analyzer.can_prove_equal(coefficients[0], 1):
            return position
    return None


def write_dtype_bits(sch: Any, block: Any) -> int:
    return sch.get(block).writes[0].source.dtype.bits


def block_loops(sch: Any, block: Any, tuning: CpuTuning) -> tuple[list[Any], list[int], int]:
    """A block's loops (all of static extent), their extents, and the lanes of its vectors: as
    many elements of its output dtype as a register holds, or 1 when it calls a scalar library
    function."""
    loops = sch.get_loops(block)
    extents = static_extents(sch, loops)
    assert extents is not None
    lanes = 1 if calls_libm(sch, block) else tuning.lanes(write_dtype_bits(sch, block))
    return loops, extents, lanes


def calls_libm(sch: Any, block: Any) -> bool:
    """Whether the block evaluates a function that only exists as a scalar library call."""
    return any(_is_libm_call(node) for node in _subexpressions(sch.get(block).body))


def _call_name(node: Any) -> str:
    name = getattr(getattr(node, "op", None), "name", "")
    return name.rsplit(".", 1)[-1] if isinstance(name, str) else ""


def _is_libm_call(node: Any) -> bool:
    """A call LLVM makes per lane; not pow(x, 2), which it turns into x * x."""
    name = _call_name(node)
    if name == "pow":
        exponent = node.args[1]
        return not (hasattr(exponent, "value") and float(exponent.value) in (1.0, 2.0))
    return name in LIBM_FUNCTIONS


def _subexpressions(expr: Any) -> list[Any]:
    """`expr` (or a block's body statement) and every expression below it (TIR's Python API
    has no visitor)."""
    found, stack = [], [expr]
    while stack:
        node = stack.pop()
        found.append(node)
        for field in ("a", "b", "value", "condition", "true_value", "false_value", "body"):
            child = getattr(node, field, None)
            if child is not None and not isinstance(child, int | float | str):
                stack.append(child)
        for field in ("args", "indices", "seq"):
            stack.extend(getattr(node, field, ()) or ())
    return found


def _loads(expr: Any) -> list[Any]:
    return [
        node
        for node in _subexpressions(expr)
        if getattr(node, "indices", None) is not None and getattr(node, "source", None) is not None
    ]


def _buffer_elements(buffer: Any) -> int:
    """Elements of a buffer, counting a dimension of unknown size as one."""
    count = 1
    for dim in buffer.shape:
        count *= int(dim) if hasattr(dim, "value") or isinstance(dim, int) else 1
    return count


def moved_bytes(sch: Any, blocks: list[Any]) -> int:
    """Bytes of the scheduled function's parameters that the blocks read or write: each
    parameter at most in full, and a table that is gathered from only for the elements read."""
    params = sch.mod["main"].params
    touched = [0] * len(params)
    for block in blocks:
        stmt = sch.get(block)
        points = prod(int(iter_var.dom.extent) for iter_var in stmt.iter_vars)
        buffers = [load.source for load in _loads(stmt.body.value)] + [stmt.body.buffer]
        for buffer in buffers:
            for position, param in enumerate(params):
                if buffer.same_as(param):
                    touched[position] += points * param.dtype.bits // 8
    return sum(
        min(count, _buffer_elements(param) * param.dtype.bits // 8)
        for count, param in zip(touched, params, strict=True)
    )


def estimated_operations(sch: Any, blocks: list[Any]) -> int:
    """Scalar operations the blocks perform: each block's operations (library calls weighted)
    times the points of its iteration domain."""
    total = 0
    for block in blocks:
        stmt = sch.get(block)
        points = prod(int(iter_var.dom.extent) for iter_var in stmt.iter_vars)
        value = getattr(stmt.body, "value", None)
        operations = _arithmetic(value) if value is not None else []
        total += points * sum(
            LIBM_CALL_OPERATIONS if _is_libm_call(node) else 1 for node in operations
        )
    return total


def _arithmetic(expr: Any) -> list[Any]:
    """The operations (arithmetic, calls, casts, selects) of a value expression, not counting
    the index arithmetic of its loads."""
    found, stack = [], [expr]
    while stack:
        node = stack.pop()
        if getattr(node, "indices", None) is not None:
            continue
        children = [getattr(node, field, None) for field in ("a", "b", "value")]
        children += [getattr(node, field, None) for field in ("true_value", "false_value")]
        children += list(getattr(node, "args", None) or ())
        children = [child for child in children if child is not None]
        if children or getattr(node, "op", None) is not None:
            found.append(node)
        stack.extend(child for child in children if not isinstance(child, int | float | str))
    return found


def worth_parallel(moved_bytes: int, operations: int, tuning: CpuTuning) -> bool:
    """Whether a function moving `moved_bytes` and doing about `operations` runs faster on all
    cores: enough work to pay for the threads, or data streaming from beyond a core's L2."""
    if tuning.cores < 2:
        return False
    return operations >= PARALLEL_MIN_OPERATIONS or moved_bytes >= tuning.l2_bytes


def divisors(n: int) -> list[int]:
    """The divisors of `n`, smallest first."""
    return [d for d in range(1, n + 1) if n % d == 0]


def largest_divisor_at_most(number: int, limit: int) -> int:
    """The largest divisor of `number` that is at most `limit` (at least 1)."""
    return max(d for d in divisors(number) if d <= limit)


def vector_width(extent: int, lanes: int) -> int:
    """The widest power of two that divides `extent` and fits in a register (1: none)."""
    width = 1
    while width * 2 <= lanes and extent % (width * 2) == 0:
        width *= 2
    return width


def reduction_width(extent: int, lanes: int) -> int:
    """The rfactor width for a reduced axis of `extent`: a power of two that divides the
    extent, up to ACCUMULATORS vectors (1: no vectorization, also when `lanes` is 1). The
    partial results are then added up one after another (floating-point order is kept), so the
    width also stays near the square root of the extent, which balances the vector loop against
    that scalar chain."""
    if lanes < 2:
        return 1
    width = vector_width(extent, lanes * ACCUMULATORS)
    while width > lanes and width * width > extent:
        width //= 2
    return width if width >= 2 else 1


def vector_registers(tuning: CpuTuning) -> int:
    """x86 has 32 vector registers with AVX-512, 16 before it."""
    return 32 if tuning.vector_bits >= 512 else 16


def inline_injective(sch: Any, blocks: list[Any]) -> list[Any]:
    """Inline every block that can be (into its consumers, else into its producer); returns the
    blocks left, in order."""
    from tvm.s_tir import ScheduleError

    remaining = list(blocks)
    progress = True
    while progress:
        progress = False
        for block in remaining:
            for inline in (sch.compute_inline, sch.reverse_compute_inline):
                try:
                    inline(block)
                except ScheduleError:
                    continue
                remaining.remove(block)
                progress = True
                break
            if progress:
                break
    return remaining


def parallelize(sch: Any, loops: list[Any], tuning: CpuTuning) -> Any:
    """Fuse the fewest leading `loops` that give every core PARALLEL_CHUNKS_PER_CORE
    iterations (fusing more only adds index arithmetic) and run them in parallel; returns the
    parallel loop."""
    extents = static_extents(sch, loops)
    assert extents is not None
    count, iterations = 1, extents[0]
    while iterations < tuning.cores * PARALLEL_CHUNKS_PER_CORE and count < len(loops):
        iterations *= extents[count]
        count += 1
    outer = sch.fuse(*loops[:count]) if count > 1 else loops[0]
    sch.parallel(outer)
    return outer


def vectorize_inner(sch: Any, block: Any, tuning: CpuTuning, enclosing: int) -> int:
    """Split the innermost of a spatial block's own loops (those below the `enclosing` loops
    it was computed at) into vectors, unless it calls a scalar library function; the vector
    width (1: none)."""
    loops = sch.get_loops(block)
    if len(loops) <= enclosing or calls_libm(sch, block):
        return 1
    extents = static_extents(sch, loops)
    assert extents is not None
    width = vector_width(extents[-1], tuning.lanes(write_dtype_bits(sch, block)))
    if width > 1:
        _, vector = sch.split(loops[-1], factors=[None, width])
        sch.vectorize(vector)
    return width


def read_constant_in_layout(
    sch: Any, block: Any, read_index: int, index_map: Callable[..., Any]
) -> bool:
    """Make `block` read its `read_index`-th input from a copy laid out by `index_map`, when that
    input is one of the model's constants (the function's `layout_free_buffers`, marked by the
    pipeline): the copy is marked as a layout rewrite, which the pipeline splits out and runs
    once at compile time (`fold_layout_rewrites`), so the kernel pays nothing for it. Returns
    False, changing nothing, for an input computed at run time."""
    func = sch.mod["main"]
    source = sch.get(block).reads[read_index].source
    free = [int(i) for i in (func.attrs or {}).get("layout_free_buffers", [])]
    if not any(func.params[i].same_as(source) for i in free):
        return False
    copy = sch.cache_read(block, read_index, "global")
    sch.transform_layout(block, ("read", read_index), index_map)
    sch.annotate(copy, "meta_schedule.layout_rewrite_preproc", True)
    return True
