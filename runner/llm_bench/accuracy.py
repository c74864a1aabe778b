"""The LLM's accuracy on real text, against the reference: its perplexity (llama.cpp's method,
zoo/llm/perplexity.py) and the reference's on the same chunks, the KL divergence and
same-top-1 rate of its next-token distributions on the positions perplexity scores, and where
its greedy continuation of a prompt first leaves the reference's.

The reference is the model as loaded (before any pass) on the `reference` target, so a
pipeline's and a target's drift are both in the figures, as in the model-level bench."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

import numpy as np

from ir.logit_drift import logit_drift
from runner.results.llm import LlmAccuracy, PerplexityRecord
from runner.results.model import KlDivergenceRecord
from zoo.llm.greedy import first_difference
from zoo.llm.perplexity import Logits, first_scored, perplexity
from zoo.llm.session_generation import SessionGenerator, left_padded


def _recording(logits: Logits, n_ctx: int, kept: list[np.ndarray]) -> Logits:
    """`logits`, keeping the positions perplexity scores (whose logits predict the second
    half of each chunk) for the drift measures."""
    start = first_scored(n_ctx)

    def run(batch: np.ndarray) -> np.ndarray:
        scores = logits(batch)
        kept.append(scores[:, start - 1 : -1].copy())
        return scores

    return run


def greedy_tokens(generator: SessionGenerator, prompt: Sequence[int], count: int) -> list[int]:
    batch = left_padded([list(prompt)], pad_id=0)
    return [int(step[0, 0]) for step in generator.generate(batch, count)]


def llm_accuracy(
    candidate: SessionGenerator,
    reference: SessionGenerator,
    *,
    text_tokens: Sequence[int],
    text_source: str,
    bos_token: int | None,
    n_ctx: int,
    chunks: int,
    greedy_prompt: Sequence[int],
    greedy_count: int,
    reference_target: str,
    thresholds: Mapping[str, float | None],
) -> LlmAccuracy:
    """Both models over the same `chunks` chunks of `n_ctx` tokens of the text, then a greedy
    generation of `greedy_count` tokens from `greedy_prompt` by each. `thresholds` holds the
    workload's `max_kl_mean`, `min_same_top1` and `max_perplexity_ratio` (None: not judged)."""
    kept_candidate: list[np.ndarray] = []
    kept_reference: list[np.ndarray] = []
    ours = perplexity(
        _recording(candidate.logits, n_ctx, kept_candidate), text_tokens, n_ctx, bos_token, chunks
    )
    theirs = perplexity(
        _recording(reference.logits, n_ctx, kept_reference), text_tokens, n_ctx, bos_token, chunks
    )
    drift = logit_drift(np.concatenate(kept_reference), np.concatenate(kept_candidate))
    expected = greedy_tokens(reference, greedy_prompt, greedy_count)
    generated = greedy_tokens(candidate, greedy_prompt, greedy_count)
    ratio = ours.value / theirs.value
    measures = {
        "max_kl_mean": drift.kl_mean,
        "min_same_top1": drift.same_top1,
        "max_perplexity_ratio": ratio,
    }
    passed, why = _judged(measures, thresholds)
    return LlmAccuracy(
        perplexity=PerplexityRecord(
            value=ours.value,
            uncertainty=ours.uncertainty,
            n_ctx=ours.n_ctx,
            chunks=ours.chunks,
            tokens_scored=ours.tokens_scored,
            text=text_source,
        ),
        reference_perplexity=theirs.value,
        kl_divergence=KlDivergenceRecord(mean=drift.kl_mean, p99=drift.kl_p99, max=drift.kl_max),
        same_top1=drift.same_top1,
        tokens_compared=drift.tokens,
        first_difference=first_difference(expected, generated),
        greedy_tokens=greedy_count,
        reference_target=reference_target,
        passed=passed,
        why=why,
    )


# A workload's accuracy thresholds: (its field, the measure's name, how the measure must
# compare with it).
_THRESHOLDS = (
    ("max_kl_mean", "KL mean", operator.le),
    ("min_same_top1", "same top-1", operator.ge),
    ("max_perplexity_ratio", "perplexity ratio", operator.le),
)
_SIGNS = {operator.le: ("≤", ">"), operator.ge: ("≥", "<")}


def _judged(
    measures: Mapping[str, float], thresholds: Mapping[str, float | None]
) -> tuple[bool | None, str]:
    """Each threshold the workload sets, met or not, in words; None when it sets none."""
    checks = []
    for field, name, holds in _THRESHOLDS:
        bound = thresholds.get(field)
        if bound is None:
            continue
        value = measures[field]
        met = holds(value, bound)
        sign = _SIGNS[holds][0 if met else 1]
        checks.append((met, f"{name} {value:.4g} {sign} {bound:g}"))
    if not checks:
        return None, "no accuracy threshold set"
    return all(met for met, _ in checks), "; ".join(text for _, text in checks)
