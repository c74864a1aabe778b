"""Packed, register-blocked fp32 GEMM for the numba provider (BLIS-style loop nest).

A and B are copied into zero-padded panels, contiguous in k: _MR rows of A, _NR columns of B.
The micro-kernel keeps an _MR x _NR tile of C in registers for a whole _KC block.

Auto-vectorization cannot produce that kernel: LLVM's x86 tuning caps its vector width at 256
bits on AVX-512 cores (half the FMA peak), and scalar accumulators get SLP-packed into a mix of
ymm/xmm. So the micro-kernel is emitted as explicit <16 x float> IR through a numba intrinsic;
explicit vectors keep their width, giving one vfmadd231ps zmm per accumulator per k step.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.base import BaseContext
from numba.core.typing import Signature
from numba.extending import intrinsic

from microbench.providers.numba_jit import parallel_jit

# One AVX-512 register of fp32; numba array strides are in bytes.
_LANES, _F32_BYTES = 16, 4
# Micro-tile: _MR x _NR accumulators (16 zmm of 32) leave registers for two B vectors and the
# broadcast A value. 12 x 32, 8 x 48 and 6 x 64 were no faster, in L1 or at 2048^3.
_MR, _NR = 8, 2 * _LANES
# k block: one B micro-panel (_KC x _NR, 32 KiB) stays in the 48 KiB L1 while it is reused for
# every A micro-panel of a row block.
_KC = 256
# Row block (A block _MC_PANELS * _MR x _KC, 256 KiB) stays in the 2 MiB L2 while every B
# micro-panel of a column block streams past it.
_MC_PANELS = 32
# Column block (_NC_PANELS * _NR = 512 columns): splits C into more tasks than threads even when
# M fits in one row block, so both cores get work.
_NC_PANELS = 16
# Spare floats per C row: with N a power of two, C rows sit a multiple of 4 KiB apart and crowd
# the same cache sets; the pad bought 2-3% at 2048^3.
_C_ROW_PAD = _LANES


@intrinsic
def _tile(
    typingctx: object,  # numba's typing context, unused: the signature is fixed
    a_panel: types.Array,
    b_panel: types.Array,
    c_tile: types.Array,
    add: types.Boolean,
) -> tuple[Signature, Callable[..., ir.Value]]:
    """c_tile (_MR x _NR) = a_panel.T @ b_panel (+ c_tile when `add`), for a_panel (kc, _MR)
    and b_panel (kc, _NR), both C-contiguous; c_tile needs unit column stride."""
    vec = ir.VectorType(ir.FloatType(), _LANES)
    i64 = ir.IntType(64)

    def codegen(
        context: BaseContext, builder: ir.IRBuilder, signature: Signature, args: list[ir.Value]
    ) -> ir.Value:
        a, b, c = (
            context.make_array(ty)(context, builder, val)
            for ty, val in zip(signature.args[:3], args[:3], strict=True)
        )
        kc = cgutils.unpack_tuple(builder, a.shape)[0]
        row_stride = builder.sdiv(cgutils.unpack_tuple(builder, c.strides)[0], i64(_F32_BYTES))
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{_LANES}f32"
        )
        zero = ir.Constant(vec, None)
        splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), _LANES), [0] * _LANES)

        def vec_at(base: ir.Value, offset: ir.Value) -> ir.Value:
            return builder.bitcast(builder.gep(base, [offset]), vec.as_pointer())

        # Stack slots in the entry block: SROA turns them into registers.
        accs = [
            [cgutils.alloca_once_value(builder, zero) for _ in range(_NR // _LANES)]
            for _ in range(_MR)
        ]
        with cgutils.for_range(builder, kc) as loop:
            b_row = builder.mul(loop.index, i64(_NR))
            a_row = builder.mul(loop.index, i64(_MR))
            b_vecs = [
                builder.load(vec_at(b.data, builder.add(b_row, i64(v * _LANES))), align=4)
                for v in range(_NR // _LANES)
            ]
            for r, row_accs in enumerate(accs):
                a_val = builder.load(builder.gep(a.data, [builder.add(a_row, i64(r))]))
                a_vec = builder.shuffle_vector(
                    builder.insert_element(zero, a_val, ir.IntType(32)(0)), zero, splat_mask
                )
                for acc, b_vec in zip(row_accs, b_vecs, strict=True):
                    builder.store(builder.call(fma, [a_vec, b_vec, builder.load(acc)]), acc)
        for r, row_accs in enumerate(accs):
            row = builder.mul(row_stride, i64(r))
            for v, acc in enumerate(row_accs):
                ptr = vec_at(c.data, builder.add(row, i64(v * _LANES)))
                old = builder.select(args[3], builder.load(ptr, align=4), zero)
                builder.store(builder.fadd(old, builder.load(acc)), ptr, align=4)
        return context.get_dummy_value()

    return types.void(a_panel, b_panel, c_tile, add), codegen


@parallel_jit
def _pack_panels(src: np.ndarray, panels: np.ndarray) -> None:
    """src (k, x) -> panels (p, k, w): column block p of src, zero-padded past x. A is packed
    through its transpose, so one routine serves both operands."""
    k, x = src.shape
    width = panels.shape[2]
    for p in numba.prange(panels.shape[0]):
        col0 = p * width
        valid = min(width, x - col0)
        for kk in range(k):
            row = panels[p, kk]
            for j in range(valid):
                row[j] = src[kk, col0 + j]
            row[valid:] = np.float32(0)


@parallel_jit
def _gemm_packed(a_panels: np.ndarray, b_panels: np.ndarray, c: np.ndarray) -> None:
    """c = A @ B from packed panels, c padded to whole tiles. Parallel over (row block, column
    block) tasks, which own disjoint C regions."""
    n_a, k, _ = a_panels.shape
    n_b = b_panels.shape[0]
    col_blocks = (n_b + _NC_PANELS - 1) // _NC_PANELS
    row_blocks = (n_a + _MC_PANELS - 1) // _MC_PANELS
    for task in numba.prange(row_blocks * col_blocks):
        rb, cb = divmod(task, col_blocks)
        for k0 in range(0, k, _KC):
            k1 = min(k, k0 + _KC)
            for jp in range(cb * _NC_PANELS, min(n_b, (cb + 1) * _NC_PANELS)):
                b_panel = b_panels[jp, k0:k1]
                for ip in range(rb * _MC_PANELS, min(n_a, (rb + 1) * _MC_PANELS)):
                    c_tile = c[ip * _MR : (ip + 1) * _MR, jp * _NR : (jp + 1) * _NR]
                    _tile(a_panels[ip, k0:k1], b_panel, c_tile, k0 > 0)


def _panel_count(extent: int, width: int) -> int:
    """Panels of `width` that cover `extent`, the last one zero-padded."""
    return (extent + width - 1) // width


class PackedGemm:
    """C = A @ B for fixed fp32 inputs. `run` packs both operands and multiplies, all timed, as
    BLAS does inside one call (prepacking B as a constant weight would save 2-5 ms at 2048^3,
    but numpy is given no such head start). C is computed into whole _MR x _NR tiles of a
    padded buffer; `out` is its M x N view."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        (m, k), n = a.shape, b.shape[1]
        self._a, self._b = a, b
        self._a_panels = np.empty((_panel_count(m, _MR), k, _MR), np.float32)
        self._b_panels = np.empty((_panel_count(n, _NR), k, _NR), np.float32)
        rows, cols = self._a_panels.shape[0] * _MR, self._b_panels.shape[0] * _NR
        self._c_tiles = np.empty((rows, cols + _C_ROW_PAD), np.float32)
        self.out = self._c_tiles[:m, :n]

    def run(self) -> None:
        _pack_panels(self._a.T, self._a_panels)
        _pack_panels(self._b, self._b_panels)
        _gemm_packed(self._a_panels, self._b_panels, self._c_tiles)
