"""How far one set of outputs is from a reference: the numbers every accuracy claim rests on."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ir.logit_drift import is_vocabulary_output, logit_drift, token_perplexity

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


# Histogram bins of |candidate - reference|: exactly 0, (0, 1e-9), then one bin per decade
# [1e-9, 1e-8) ... [1, 10), then [10, inf] with non-finite differences (NaN against a number).
HISTOGRAM_EDGES = tuple(10.0**exponent for exponent in range(-9, 2))
HISTOGRAM_BINS = (
    "0",
    f"<{HISTOGRAM_EDGES[0]:g}",
    *(f"[{low:g}, {high:g})" for low, high in itertools.pairwise(HISTOGRAM_EDGES)),
    f">={HISTOGRAM_EDGES[-1]:g}",
)


def difference_histogram(reference: np.ndarray, candidate: np.ndarray) -> tuple[int, ...]:
    """Counts of elements per `HISTOGRAM_BINS` bin; all zero when the shapes differ."""
    if reference.shape != candidate.shape:
        return (0,) * len(HISTOGRAM_BINS)
    if reference.dtype.kind not in "fciub":  # strings, objects: equal or not
        diff = np.where(reference == candidate, 0.0, np.inf).ravel()
    else:
        ref, got = reference.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
        diff = np.where(np.isnan(ref) & np.isnan(got), 0.0, np.abs(ref - got))
    bins = np.where(diff == 0, 0, np.searchsorted(HISTOGRAM_EDGES, diff, side="right") + 1)
    bins[np.isnan(diff)] = len(HISTOGRAM_BINS) - 1
    return tuple(int(count) for count in np.bincount(bins, minlength=len(HISTOGRAM_BINS)))


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """The share of rows whose largest score is in the same place: for outputs with a class
    axis last (a classifier's logits or probabilities); None for anything else."""
    if (
        reference.shape != candidate.shape
        or reference.ndim < 2
        or reference.shape[-1] < 2
        or reference.dtype.kind != "f"
    ):
        return None
    same = np.argmax(reference, axis=-1) == np.argmax(candidate, axis=-1)
    return float(same.mean())


def drift_record(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    names: Sequence[str] = (),
    token_ids: np.ndarray | None = None,
) -> list[dict[str, object]]:
    """Per output: the drift figures, the counts per `HISTOGRAM_BINS` bin and the top-1
    agreement (null where it does not apply), as the audit stores them. With the outputs'
    `names`, a vocabulary output (`ir.logit_drift.is_vocabulary_output`) of matching shapes
    also gets `kl_divergence` {mean, p99, max}: with `top1_agreement` (the share of positions
    whose most likely token is unchanged), the figures its drift is read in, since cosine says
    little about a distribution over tokens; with the `token_ids` the logits follow (real
    text), also `perplexity` {reference, candidate, ratio} of those tokens."""
    records: list[dict[str, object]] = []
    drifts = outputs_drift(reference, candidate)  # checks the counts match
    output_names = names or ("",) * len(drifts)  # no name: no output is a vocabulary output
    for drift, ref, got, name in zip(drifts, reference, candidate, output_names, strict=True):
        record: dict[str, object] = {
            **drift.to_json(),
            "histogram": list(difference_histogram(ref, got)),
            "top1_agreement": top1_agreement(ref, got),
        }
        if drift.shape_match and is_vocabulary_output(name, ref):
            logits = logit_drift(ref, got)
            record["kl_divergence"] = logits.kl_divergence_json()
            change = None if token_ids is None else _perplexity_change(ref, got, token_ids)
            if change is not None:
                record["perplexity"] = change
        records.append(record)
    return records


def _perplexity_change(
    reference: np.ndarray, candidate: np.ndarray, token_ids: np.ndarray
) -> dict[str, float] | None:
    before = token_perplexity(reference, token_ids)
    after = token_perplexity(candidate, token_ids)
    if before is None or after is None:
        return None
    return {"reference": before, "candidate": after, "ratio": after / before}
