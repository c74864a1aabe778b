"""Round-to-nearest quantization of a weight table in blocks along its input axis, and the
layouts runtimes read it in: com.microsoft MatMulNBits' packed bytes, and the int4/int8 tensors
of ONNX's blocked DequantizeLinear (opset 21).

The table is [N, K] (one row per output feature), the layout MatMulNBits stores, and each row
is cut into blocks of `block` consecutive values along K, each with its own scale (and zero
point). A row whose K is not a multiple of the block is padded with zeros, which every block
represents exactly.

Symmetric blocks use llama.cpp's Q4_0 rule, whatever the width: the scale is the block's
signed extreme divided by -2^(bits-1), so the extreme lands exactly on the level -2^(bits-1)
and all 2^bits levels are in use (absmax / (2^(bits-1) - 1) leaves the lowest level empty and
rounds with steps 8/7 as coarse at 4 bits). The scale's sign follows the extreme's; the one
value a block may hold at the opposite extreme is clamped to 2^(bits-1) - 1, one step off.
Stored levels are offset by 2^(bits-1), MatMulNBits' default zero point. Asymmetric blocks
span [min(block, 0), max(block, 0)] in 2^bits - 1 steps with an integer zero point (0 is kept
in range so the zero point is a level). Rounding is numpy's: to nearest, ties to even.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class BlockQuantized:
    """A float32 table [N, K] quantized per block along K: `levels` uint8 [N, blocks, block]
    in [0, 2^bits), `scales` float32 [N, blocks], and `zero_points` uint8 [N, blocks] (None for
    symmetric blocks, whose zero point is 2^(bits-1))."""

    levels: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray | None
    bits: int
    k: int

    @property
    def n(self) -> int:
        return self.levels.shape[0]

    @property
    def blocks(self) -> int:
        return self.levels.shape[1]

    @property
    def block(self) -> int:
        return self.levels.shape[2]

    def _offsets(self) -> np.ndarray:
        """The zero point of every block, [N, blocks, 1]."""
        if self.zero_points is None:
            return np.full((self.n, self.blocks, 1), 2 ** (self.bits - 1), np.int32)
        return self.zero_points.astype(np.int32)[..., None]

    def signed_levels(self) -> np.ndarray:
        """levels - zero point, int32 [N, K] (the padding cut off)."""
        signed = self.levels.astype(np.int32) - self._offsets()
        return signed.reshape(self.n, -1)[:, : self.k]

    def dequantized(self) -> np.ndarray:
        """The values the quantized table stands for, float32 [N, K]: (level - zero point) *
        scale, computed in float32 as the kernels do."""
        signed = (self.levels.astype(np.int32) - self._offsets()).astype(np.float32)
        values = signed * self.scales[..., None]
        return values.reshape(self.n, -1)[:, : self.k]

    def packed_levels(self) -> np.ndarray:
        """MatMulNBits' input B: uint8 [N, blocks, block * bits / 8], two 4-bit levels per
        byte with the first in the low nibble."""
        return _pack(self.levels, self.bits)

    def packed_zero_points(self) -> np.ndarray | None:
        """MatMulNBits' zero_points: uint8 [N, ceil(blocks * bits / 8)], packed as B is (an
        odd number of 4-bit zero points leaves the last high nibble 0); None when symmetric."""
        if self.zero_points is None:
            return None
        return _pack(self.zero_points, self.bits)

    def dequantize_linear_data(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The data and zero point of a blocked DequantizeLinear over the [N, K] table (axis
        1): int4/int8 levels with no zero point when symmetric, uint4/uint8 levels and zero
        points when asymmetric."""
        if self.zero_points is None:
            dtype = ml_dtypes.int4 if self.bits == 4 else np.int8
            return self.signed_levels().astype(dtype), None
        dtype = ml_dtypes.uint4 if self.bits == 4 else np.uint8
        levels = self.levels.reshape(self.n, -1)[:, : self.k]
        return levels.astype(dtype), self.zero_points.astype(dtype)


def _pack(levels: np.ndarray, bits: int) -> np.ndarray:
    """uint8 levels [..., L] -> bytes [..., ceil(L * bits / 8)], low nibble first at 4 bits."""
    if bits == 8:
        return levels.astype(np.uint8)
    if levels.shape[-1] % 2:
        levels = np.concatenate([levels, np.zeros((*levels.shape[:-1], 1), np.uint8)], axis=-1)
    return (levels[..., 0::2] | (levels[..., 1::2] << 4)).astype(np.uint8)


def quantize_blocks(table: np.ndarray, bits: int, block: int, symmetric: bool) -> BlockQuantized:
    """`table` [N, K] quantized by round-to-nearest in blocks of `block` values along K."""
    n, k = table.shape
    blocks = -(-k // block)
    padded = np.zeros((n, blocks * block), np.float32)
    padded[:, :k] = table
    values = padded.reshape(n, blocks, block)
    if symmetric:
        position = np.abs(values).argmax(axis=-1)[..., None]
        extreme = np.take_along_axis(values, position, axis=-1)[..., 0]
        scales = (extreme / np.float32(-(2 ** (bits - 1)))).astype(np.float32)
        zero_points = None
        offsets = np.full((n, blocks), 2 ** (bits - 1), np.float32)
    else:
        minimum = np.minimum(values.min(axis=-1), 0)
        maximum = np.maximum(values.max(axis=-1), 0)
        scales = ((maximum - minimum) / np.float32(2**bits - 1)).astype(np.float32)
        steps_below_zero = np.divide(-minimum, scales, out=np.zeros_like(scales), where=scales != 0)
        zero_points = np.clip(np.round(steps_below_zero), 0, 2**bits - 1).astype(np.uint8)
        offsets = zero_points.astype(np.float32)
    divisor = scales[..., None]
    steps = np.divide(values, divisor, out=np.zeros_like(values), where=divisor != 0)
    levels = np.clip(np.round(steps) + offsets[..., None], 0, 2**bits - 1)
    return BlockQuantized(levels.astype(np.uint8), scales, zero_points, bits, k)
