"""The bytes a sample's response carries: a batch's outputs, so LoadGen's accuracy log holds
them and the task metrics can be computed from that log, as MLPerf's accuracy scripts do.

Layout: the session's outputs in their order, each as its raw C-order bytes in the machine's
native byte order, concatenated with nothing between them. No header: the reader is told each
output's dtype and shape (`ArraySpec`, e.g. taken from a warm-up run's outputs with
`ArraySpec.of`), and a response whose length disagrees is refused rather than guessed at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ir.errors import AsicperfError


@dataclass(frozen=True)
class ArraySpec:
    """One output's dtype (numpy's name, e.g. "float32") and shape, batch dimension included."""

    dtype: str
    shape: tuple[int, ...]

    @staticmethod
    def of(array: np.ndarray) -> ArraySpec:
        return ArraySpec(np.dtype(array.dtype).name, tuple(array.shape))

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def response_bytes(outputs: Sequence[np.ndarray]) -> bytes:
    """A batch's outputs in the layout above."""
    return b"".join(np.ascontiguousarray(output).tobytes() for output in outputs)


def outputs_from_bytes(data: bytes, layout: Sequence[ArraySpec], where: str) -> list[np.ndarray]:
    """The outputs `response_bytes` wrote, as arrays of `layout`; `where` names the response
    in the error when its length does not match."""
    expected = sum(spec.nbytes for spec in layout)
    if len(data) != expected:
        described = ", ".join(f"{spec.dtype}{list(spec.shape)}" for spec in layout)
        raise AsicperfError(
            f"{where}: {len(data)} response bytes, but outputs {described} take {expected}"
        )
    outputs = []
    offset = 0
    for spec in layout:
        flat = np.frombuffer(data, dtype=spec.dtype, count=math.prod(spec.shape), offset=offset)
        outputs.append(flat.reshape(spec.shape))
        offset += spec.nbytes
    return outputs
