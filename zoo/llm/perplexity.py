"""Perplexity the way llama.cpp's `perplexity` tool computes it, so a figure here can be set
beside one from `llama-perplexity` on the same text and model.

Its method (tools/perplexity/perplexity.cpp, default stride): the token stream is cut into
consecutive chunks of n_ctx tokens, the tail that does not fill a chunk dropped; each chunk is
evaluated from an empty cache with its first token replaced by BOS when the model adds one; only
the second half of each chunk is scored (positions n_ctx//2 + 1 .. n_ctx - 1, each given every
token before it in its chunk), so every scored token has at least half a context behind it; at
least two chunks are required. The figure is exp(mean negative log-likelihood), and its "+/-" is
the perplexity times the standard error of that mean.

The model is a `logits` callable (a full forward pass over each chunk), so any runtime can be
measured: a target's session, the numpy reference, llama.cpp itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ir.errors import AsicperfError
from ir.log_probs import target_log_probs

# token ids [chunks, n_ctx] int64 -> logits [chunks, n_ctx, vocab] float32
Logits = Callable[[np.ndarray], np.ndarray]

MIN_CHUNKS = 2
# The smallest context whose second half scores a token: n_ctx - n_ctx // 2 - 1 >= 1.
MIN_CONTEXT = 3


@dataclass(frozen=True)
class Perplexity:
    value: float
    uncertainty: float  # llama.cpp's "PPL = value +/- uncertainty"
    n_ctx: int
    chunks: int
    tokens_scored: int

    def to_json(self) -> dict[str, Any]:
        return {
            "perplexity": self.value,
            "uncertainty": self.uncertainty,
            "n_ctx": self.n_ctx,
            "chunks": self.chunks,
            "tokens_scored": self.tokens_scored,
        }


def first_scored(n_ctx: int) -> int:
    """The position of the first token a chunk scores (its logits come from the position
    before): the second half of the chunk, as llama.cpp's `first = n_ctx/2` plus one."""
    return n_ctx // 2 + 1


def context_chunks(
    tokens: Sequence[int], n_ctx: int, bos_token: int | None, max_chunks: int | None = None
) -> np.ndarray:
    """The token stream cut into [chunks, n_ctx] int64 (a copy: `tokens` is left alone), the
    tail that does not fill a chunk dropped, each chunk's first token replaced by `bos_token`
    when the model has one; at most `max_chunks` chunks (llama.cpp's `--chunks`)."""
    if n_ctx < MIN_CONTEXT:
        raise AsicperfError(
            f"perplexity context of {n_ctx} tokens: it must be at least {MIN_CONTEXT}, so the "
            "second half of each chunk scores a token"
        )
    if max_chunks is not None and max_chunks < MIN_CHUNKS:
        raise AsicperfError(f"perplexity over {max_chunks} chunks: at least {MIN_CHUNKS} needed")
    count = len(tokens) // n_ctx
    if count < MIN_CHUNKS:
        raise AsicperfError(
            f"perplexity needs at least {MIN_CHUNKS * n_ctx} tokens ({MIN_CHUNKS} chunks of "
            f"{n_ctx}); the text has {len(tokens)}"
        )
    if max_chunks is not None:
        count = min(count, max_chunks)
    chunks = np.array(tokens[: count * n_ctx], dtype=np.int64).reshape(count, n_ctx)
    if bos_token is not None:
        chunks[:, 0] = bos_token
    return chunks


def perplexity(
    logits: Logits,
    tokens: Sequence[int],
    n_ctx: int,
    bos_token: int | None,
    max_chunks: int | None = None,
    batch_size: int = 1,
) -> Perplexity:
    """The perplexity of the model behind `logits` on `tokens` (the whole stream, BOS first
    when the model adds one: `EvaluationText.tokens`), `batch_size` chunks per call: a call's
    float64 log-probabilities take batch_size * n_ctx/2 * vocab * 8 bytes."""
    chunks = context_chunks(tokens, n_ctx, bos_token, max_chunks)
    start = first_scored(n_ctx)
    negative_log_likelihoods = []
    for index in range(0, len(chunks), batch_size):
        batch = chunks[index : index + batch_size]
        scores = logits(batch)
        _check_logits(scores, batch)
        # logits at position j predict the token at j + 1
        log_probs = target_log_probs(scores[:, start - 1 : -1], batch[:, start:])
        negative_log_likelihoods.append(-log_probs.ravel())
    return _summary(np.concatenate(negative_log_likelihoods), n_ctx, len(chunks))


def _check_logits(scores: np.ndarray, batch: np.ndarray) -> None:
    """A runtime that returns only the last position's logits, or a tokenizer whose ids the
    model's vocabulary lacks, would otherwise score the wrong numbers or fail deep in numpy."""
    if scores.ndim != 3 or scores.shape[:2] != batch.shape:
        raise AsicperfError(
            f"perplexity: the model returned logits of shape {tuple(scores.shape)} for tokens "
            f"{tuple(batch.shape)}; expected [{batch.shape[0]}, {batch.shape[1]}, vocab]"
        )
    highest = int(batch.max())
    if highest >= scores.shape[2]:
        raise AsicperfError(
            f"perplexity: token id {highest} is outside the model's vocabulary of {scores.shape[2]}"
        )


def _summary(negative_log_likelihoods: np.ndarray, n_ctx: int, chunks: int) -> Perplexity:
    """exp(mean NLL) and llama.cpp's uncertainty: the population variance of the NLLs over
    count - 1 gives the squared standard error of their mean, scaled by the perplexity (the
    derivative of exp)."""
    count = len(negative_log_likelihoods)
    value = float(np.exp(negative_log_likelihoods.mean()))
    standard_error = float(np.sqrt(negative_log_likelihoods.var() / (count - 1)))
    return Perplexity(value, value * standard_error, n_ctx, chunks, count)
