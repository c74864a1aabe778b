"""How far one set of outputs is from a reference: the numbers every accuracy claim rests on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Relative error is measured against max(|reference|, this), so near-zero references do not
# turn rounding noise into huge relative errors.
_REL_FLOOR = 1e-6


@dataclass(frozen=True)
class OutputDrift:
    """Drift of one output tensor against its reference."""

    index: int
    max_abs: float
    mean_abs: float
    max_rel: float
    mean_rel: float
    cosine: float
    shape_match: bool

    def to_json(self) -> dict[str, float | int | bool]:
        return asdict(self)


def output_drift(index: int, reference: np.ndarray, candidate: np.ndarray) -> OutputDrift:
    if reference.shape != candidate.shape:
        nan = float("nan")
        return OutputDrift(index, nan, nan, nan, nan, nan, shape_match=False)
    if reference.dtype.kind not in "fciub":  # strings, objects: equal or not
        same = bool(np.array_equal(reference, candidate))
        return OutputDrift(index, 0.0 if same else 1.0, 0.0, 0.0, 0.0, 1.0, shape_match=True)
    ref = reference.astype(np.float64).ravel()
    got = candidate.astype(np.float64).ravel()
    if ref.size == 0:
        return OutputDrift(index, 0.0, 0.0, 0.0, 0.0, 1.0, shape_match=True)
    diff = np.abs(ref - got)
    both_nan = np.isnan(ref) & np.isnan(got)
    diff[both_nan] = 0.0
    rel = diff / np.maximum(np.abs(ref), _REL_FLOOR)
    return OutputDrift(
        index=index,
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        max_rel=float(rel.max()),
        mean_rel=float(rel.mean()),
        cosine=_cosine(np.where(both_nan, 0.0, ref), np.where(both_nan, 0.0, got)),
        shape_match=True,
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.dot(a, b) / norm)


def outputs_drift(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]
) -> list[OutputDrift]:
    """Drift per output; the two lists must have the same length."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(candidate)} outputs compared with {len(reference)} references")
    return [
        output_drift(index, ref, got)
        for index, (ref, got) in enumerate(zip(reference, candidate, strict=True))
    ]
