"""The LLM accuracy measures against a reference on the same tokens: the logit drift (KL
divergence per position, same-top-1 rate; ir/logit_drift.py, where the pass audit reads them
too) and, for greedy generation, where the two token sequences part.
"""

from __future__ import annotations

from collections.abc import Sequence

from ir.logit_drift import LogitDrift, logit_drift, token_kl_divergence

__all__ = ["LogitDrift", "first_difference", "logit_drift", "token_kl_divergence"]


def first_difference(reference: Sequence[int], candidate: Sequence[int]) -> int | None:
    """The index of the first token where two greedy generations differ (a sequence that stops
    early differs where the other goes on); None when they are equal."""
    for index, (expected, got) in enumerate(zip(reference, candidate, strict=False)):
        if expected != got:
            return index
    if len(reference) != len(candidate):
        return min(len(reference), len(candidate))
    return None
