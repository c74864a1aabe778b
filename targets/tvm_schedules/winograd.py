"""3x3, stride-1 convolutions as Winograd's minimal filtering F(2x2, 3x3): each 2x2 tile of
output comes from a 4x4 tile of input through 16 multiplies per input channel instead of 36,
so the convolution's multiply-adds become 16 independent matrix products with 2.25 times fewer
operations than the direct convolution (plus two cheap, memory-bound transforms).

Written at the Relax level, before legalization, on the NHWC/HWIO convolutions of
`pipeline.fused_module`, for constant weights only (their transform runs here, once):

    V[e, p, c] = (B^T d B)[e] over the 4x4 input tile of each output tile p  (winograd_input)
    M[e, p, f] = sum_c V[e, p, c] U[e, c, f],  U = G g G^T                   (a batched matmul)
    Y[n, y, x, f] = (A^T M A) over the 16 products of the tile holding (y, x) (winograd_output)

The matrix product goes through the matmul rule; the two transforms through `WinogradRule`;
the convolution's epilogue (bias, residual Add, ReLU) folds into the output transform.
F(2x2, 3x3) keeps float32 rounding close to the direct convolution's (its transform matrices
hold 0, +-1 and 1/2 only). Larger tiles (F(4x4, 3x3): 4x fewer multiplies) are not used: their
matrices hold entries up to 5 (for the points 0, +-1, +-2), which amplify the rounding, and
their transformed weights are 4x the direct ones, which batch 1 pays in memory traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

# The transform matrices of F(2x2, 3x3) (Lavin and Gray, 2015), as (row index, sign) terms:
# input transform B^T (4x4, entries 0 and +-1), output transform A^T (2x4, 0 and +-1).
INPUT_TERMS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 1), (2, -1)),
    ((1, 1), (2, 1)),
    ((2, 1), (1, -1)),
    ((1, 1), (3, -1)),
)
OUTPUT_TERMS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 1), (1, 1), (2, 1)),
    ((1, 1), (2, -1), (3, -1)),
)
# The weight transform G (4x3), applied at compile time in float64.
WEIGHT_TRANSFORM = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
TILE = 4  # input tile side
OUT = 2  # output tile side
INPUT_BLOCK = "winograd_input"
OUTPUT_BLOCK = "winograd_output"
WINOGRAD_ALGORITHM = "Winograd F(2x2, 3x3)"
# The multiply-adds it does per 2x2 output tile and channel pair over the direct convolution's
# (16 against 36); the transforms' adds are a few per element, next to C of them.
WINOGRAD_FLOP_SCALE = 16 / 36
# A convolution over fewer input channels (an RGB stem) stays direct: its products would be a
# few multiply-adds each, next to the transforms' passes over every tile.
MIN_CHANNELS = 16


@dataclass(frozen=True)
class WinogradConv:
    """A convolution the rewrite takes: NHWC input extents, F output channels, its top and left
    zero padding, and its output extents."""

    batch: int
    height: int
    width: int
    channels: int
    out_channels: int
    pad_top: int
    pad_left: int
    out_height: int
    out_width: int

    @property
    def tiles_high(self) -> int:
        return -(-self.out_height // OUT)

    @property
    def tiles_wide(self) -> int:
        return -(-self.out_width // OUT)

    @property
    def tiles(self) -> int:
        return self.batch * self.tiles_high * self.tiles_wide

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_height, self.out_width, self.out_channels)


def transformed_weights(hwio: np.ndarray) -> np.ndarray:
    """U[e, c, f] = (G g G^T)[e // 4, e % 4] per input and output channel, from HWIO weights."""
    g = WEIGHT_TRANSFORM
    u = np.einsum("ar,rscf,bs->abcf", g, hwio.astype(np.float64), g)
    return u.reshape(TILE * TILE, hwio.shape[2], hwio.shape[3]).astype(np.float32)


def winograd_conv(call: Any) -> WinogradConv | str:
    """The convolution's extents, or why the rewrite leaves it direct."""
    import tvm

    attrs = call.attrs
    if attrs.data_layout != "NHWC" or attrs.kernel_layout != "HWIO":
        return f"layout {attrs.data_layout}/{attrs.kernel_layout}, not NHWC/HWIO"
    if attrs.out_layout not in ("", "NHWC"):
        return f"output layout {attrs.out_layout}"
    if [int(s) for s in attrs.strides] != [1, 1] or [int(d) for d in attrs.dilation] != [1, 1]:
        return "not stride 1, dilation 1"
    if int(attrs.groups) != 1:
        return "grouped"
    data, weight = call.args
    if not isinstance(weight, tvm.ir.expr.GenericConst):
        return "weights computed at run time"
    for what, typed in (("input", data), ("weight", weight), ("output", call)):
        if str(typed.ty.dtype) != "float32":
            return f"{what} dtype {typed.ty.dtype}"
    shape = [int(d) for d in weight.value.shape]
    if shape[:2] != [3, 3]:
        return f"kernel {shape[0]}x{shape[1]}"
    extents = data.ty.shape
    if extents is None or not all(isinstance(d, tvm.tirx.IntImm) for d in extents.values):
        return "dynamic input shape"
    n, h, w, c = (int(d) for d in extents.values)
    if c < MIN_CHANNELS:
        return f"{c} input channels (fewer than {MIN_CHANNELS})"
    top, left, bottom, right = (int(p) for p in attrs.padding)
    return WinogradConv(
        batch=n,
        height=h,
        width=w,
        channels=c,
        out_channels=shape[3],
        pad_top=top,
        pad_left=left,
        out_height=h + top + bottom - 2,
        out_width=w + left + right - 2,
    )


def _select(index: Any, cases: list[Any]) -> Any:
    """cases[index] as a chain of selects: folds to one case once `index` is a constant (the
    transforms' schedule unrolls it)."""
    from tvm import tirx

    value = cases[-1]
    for k in range(len(cases) - 2, -1, -1):
        value = tirx.Select(index == k, cases[k], value)
    return value


def input_transform(data: Any, conv: WinogradConv) -> Any:
    """V[e, p, c] = (B^T d B)[e // 4, e % 4] for the 4x4 input tile d of output tile p (zero
    outside the input)."""
    from tvm import te, tirx

    area = conv.tiles_high * conv.tiles_wide

    def compute(e: Any, p: Any, c: Any) -> Any:
        n, rest = p // area, p % area
        y0 = (rest // conv.tiles_wide) * OUT - conv.pad_top
        x0 = (rest % conv.tiles_wide) * OUT - conv.pad_left

        def tile(i: int, j: int) -> Any:
            y, x = y0 + i, x0 + j
            inside = tirx.all(y >= 0, y < conv.height, x >= 0, x < conv.width)
            return tirx.if_then_else(inside, data[n, y, x, c], tirx.const(0.0, "float32"))

        cases = []
        for row in INPUT_TERMS:
            for col in INPUT_TERMS:
                terms = [tile(i, j) if a * b > 0 else -tile(i, j) for i, a in row for j, b in col]
                cases.append(_sum(terms))
        return _select(e, cases)

    return te.compute((TILE * TILE, conv.tiles, conv.channels), compute, name=INPUT_BLOCK)


def output_transform(products: Any, conv: WinogradConv, *folded: Any, relu: bool = False) -> Any:
    """Y[n, y, x, f] = (A^T M A)[y % 2, x % 2] over the 16 products of the tile holding (y, x),
    plus each `folded` tensor (a [1, 1, 1, F] bias or an NHWC residual, broadcast), then a ReLU
    when asked."""
    from tvm import te, tirx

    def compute(n: Any, y: Any, x: Any, f: Any) -> Any:
        p = (n * conv.tiles_high + y // OUT) * conv.tiles_wide + x // OUT
        cases = []
        for row in OUTPUT_TERMS:
            for col in OUTPUT_TERMS:
                terms = [
                    products[i * TILE + j, p, f] if a * b > 0 else -products[i * TILE + j, p, f]
                    for i, a in row
                    for j, b in col
                ]
                cases.append(_sum(terms))
        value = _select((y % OUT) * OUT + x % OUT, cases)
        for tensor in folded:
            index = [
                0 if int(d) == 1 else v for d, v in zip(tensor.shape, (n, y, x, f), strict=True)
            ]
            value = value + tensor[tuple(index)]
        return tirx.max(value, tirx.const(0.0, "float32")) if relu else value

    return te.compute(conv.output_shape, compute, name=OUTPUT_BLOCK)


def _sum(terms: list[Any]) -> Any:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


@dataclass(frozen=True)
class _Pending:
    """An output transform the rewrite emitted, which what follows may be folded into: the
    bias add, the residual add, the ReLU, in that order, as ResNet's blocks have them (the
    transform is then emitted again with it; the first one is left dead)."""

    products: Any  # the relax var of M
    conv: WinogradConv
    added: tuple[Any, ...] = ()  # the bias constant, then the residual
    relu: bool = False

    @property
    def function(self) -> str:
        """The transform's function name lists what it folded, as TVM names fused functions
        (`winograd_output_add_relu`): the profile reads a function's ops from its name."""
        return OUTPUT_BLOCK + "_add" * len(self.added) + ("_relu" if self.relu else "")

    def takes(self, addend: Any) -> bool:
        """`addend` folds in next: first a constant bias per output channel, then an NHWC
        tensor of the output's shape; nothing after the ReLU."""
        import tvm

        if self.relu or len(self.added) == 2:
            return False
        constant = isinstance(addend, tvm.ir.expr.GenericConst)
        if constant != (not self.added):
            return False
        shape = (1, 1, 1, self.conv.out_channels) if not self.added else self.conv.output_shape
        typed = addend.ty
        if typed.shape is None or str(typed.dtype) != "float32":
            return False
        return tuple(int(d) for d in typed.shape.values) == shape


def rewrite_winograd(module: Any) -> Any:
    """Every convolution `winograd_conv` takes, as the three steps, with the bias add, residual
    Add and ReLU that follow it folded into the output transform."""
    from tvm import relax

    @relax.expr_functor.mutator
    class _Rewriter(relax.PyExprMutator):
        def __init__(self, mod: Any) -> None:
            super().__init__(mod)
            self.pending: dict[Any, _Pending] = {}

        def _emit_output(self, pending: _Pending) -> Any:
            def compute(products: Any, *folded: Any) -> Any:
                return output_transform(products, pending.conv, *folded, relu=pending.relu)

            out = self.builder_.emit_te(
                compute, pending.products, *pending.added, primfunc_name_hint=pending.function
            )
            self.pending[out] = pending
            return out

        def _source(self, expr: Any) -> Any:
            """The variable `expr` is bound to, through the aliases the mutator leaves (a
            binding whose value the rewrite replaced is re-bound to the new variable)."""
            while isinstance(expr, relax.Var):
                bound = self.lookup_binding(expr)
                if not isinstance(bound, relax.Var):
                    break
                expr = bound
            return expr

        def visit_call_(self, call: Any) -> Any:
            call = super().visit_call_(call)
            name = getattr(call.op, "name", "")
            if name == "relax.nn.conv2d":
                return self._conv(call)
            if name == "relax.add":
                return self._add(call)
            if name == "relax.nn.relu":
                pending = self.pending.get(self._source(call.args[0]))
                if pending is not None and not pending.relu:
                    return self._emit_output(replace(pending, relu=True))
            return call

        def _conv(self, call: Any) -> Any:
            conv = winograd_conv(call)
            if isinstance(conv, str):
                return call
            data, weight = call.args
            u = relax.const(transformed_weights(weight.value.numpy()))
            v = self.builder_.emit_te(
                lambda d: input_transform(d, conv), data, primfunc_name_hint=INPUT_BLOCK
            )
            products = self.builder_.emit(relax.op.matmul(v, u))
            return self._emit_output(_Pending(products, conv))

        def _add(self, call: Any) -> Any:
            for ours, other in (call.args, tuple(reversed(call.args))):
                pending = self.pending.get(self._source(ours))
                if pending is not None and pending.takes(other):
                    return self._emit_output(replace(pending, added=(*pending.added, other)))
            return call

    rewriter = _Rewriter(module)
    for var, func in module.functions.items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(var, rewriter.visit_expr(func))
    rewritten = relax.transform.DeadCodeElimination()(rewriter.builder_.get())
    # Injective (TVM's OpPatternKind 2), so that FuseOps fuses the padding or layout copy before
    # the input transform, and what else follows the output transform.
    for var, func in rewritten.functions.items():
        if var.name_hint.startswith((INPUT_BLOCK, OUTPUT_BLOCK)):
            rewritten[var] = func.with_attr("op_pattern", 2)
    return rewritten
