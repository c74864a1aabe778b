"""Where two greedy generations part: the generation-side drift measure. The per-position
measures (KL divergence, same-top-1 rate) are in ir/logit_drift.py, where the pass audit reads
them too."""

from __future__ import annotations

from collections.abc import Sequence


def first_difference(reference: Sequence[int], candidate: Sequence[int]) -> int | None:
    """The index of the first token where two greedy generations differ (a sequence that stops
    early differs where the other goes on); None when they are equal."""
    for index, (expected, got) in enumerate(zip(reference, candidate, strict=False)):
        if expected != got:
            return index
    if len(reference) != len(candidate):
        return min(len(reference), len(candidate))
    return None
