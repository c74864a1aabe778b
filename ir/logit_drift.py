"""How far a candidate's next-token distributions drift from a reference's on the same tokens,
the measures llama.cpp's `perplexity --kl-divergence` reports for a quantized model: the KL
divergence of each position's distribution, and how often both pick the same most likely token.

Why not cosine or max-abs on the logits: a language model's output is a distribution, and
logits can move a lot where the probability is negligible and change nothing, or move a little
at the top and change the generated text. KL weighs each change by the reference's probability.

Why in ir/: they need no runtime, and the pass audit's numeric check (passes/, which imports no
zoo) reads a vocabulary output's drift in them as the LLM accuracy measures do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ir.errors import AsicperfError
from ir.log_probs import log_softmax, target_log_probs

# The output name onnxruntime-genai and Hugging Face's exporters give a decoder's next-token
# scores; see `is_vocabulary_output`.
VOCABULARY_OUTPUT_NAME = "logits"

# The input holding the token ids those scores follow (onnxruntime-genai's name): given it,
# a check also reads the change in perplexity of those tokens (`token_perplexity`).
TOKEN_INPUT_NAME = "input_ids"

# Positions per step: bounds the float64 temporaries at a few times rows * vocab * 8 bytes
# (a 49,152-token vocabulary: 25 MiB each), whatever the number of tokens compared.
_ROWS_PER_STEP = 64


@dataclass(frozen=True)
class LogitDrift:
    tokens: int
    kl_mean: float
    kl_p99: float  # numpy's default (linear) percentile
    kl_max: float
    same_top1_tokens: int

    @property
    def same_top1(self) -> float:
        """The share of positions where both put their highest logit on the same token."""
        return self.same_top1_tokens / self.tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "kl_divergence": self.kl_divergence_json(),
            "same_top1": self.same_top1,
            "same_top1_tokens": self.same_top1_tokens,
        }

    def kl_divergence_json(self) -> dict[str, float]:
        return {"mean": self.kl_mean, "p99": self.kl_p99, "max": self.kl_max}


def is_vocabulary_output(name: str, value: np.ndarray) -> bool:
    """Whether an output holds next-token scores, to be read in KL and same-top-1: it is named
    `logits` and is floating point [..., vocab] with at least one position and two tokens.

    By name rather than by size: a large last axis is as likely an image row or a hidden state,
    whose softmax means nothing, while `logits` is what decoders' exports call the scores (a
    classifier's `logits` qualify too: their softmax is a distribution as well)."""
    return (
        name == VOCABULARY_OUTPUT_NAME
        and value.dtype.kind == "f"
        and value.ndim >= 2
        and value.shape[-1] > 1
        and value.size > 0
    )


def token_kl_divergence(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """KL(reference || candidate) in nats for each position of logits [..., vocab] (float64,
    flattened to one value per position)."""
    reference_rows, candidate_rows = _rows(reference, candidate)
    divergences = np.empty(len(reference_rows), dtype=np.float64)
    for start in range(0, len(reference_rows), _ROWS_PER_STEP):
        step = slice(start, start + _ROWS_PER_STEP)
        log_p = log_softmax(reference_rows[step])
        log_q = log_softmax(candidate_rows[step])
        divergences[step] = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
    # A divergence is never negative; rounding can leave -1e-17 where the two agree.
    return np.maximum(divergences, 0.0)


def logit_drift(reference: np.ndarray, candidate: np.ndarray) -> LogitDrift:
    """The candidate's drift from the reference, both logits [..., vocab] on the same tokens."""
    divergences = token_kl_divergence(reference, candidate)
    reference_rows, candidate_rows = _rows(reference, candidate)
    same = np.argmax(reference_rows, axis=-1) == np.argmax(candidate_rows, axis=-1)
    return LogitDrift(
        tokens=len(divergences),
        kl_mean=float(divergences.mean()),
        kl_p99=float(np.percentile(divergences, 99)),
        kl_max=float(divergences.max()),
        same_top1_tokens=int(same.sum()),
    )


def token_perplexity(logits: np.ndarray, token_ids: np.ndarray) -> float | None:
    """exp(mean negative log-likelihood) of each token given the logits one position before,
    for logits [batch, length, vocab] over token ids [batch, length]; None when the shapes do
    not pair so, or fewer than two positions leave nothing to predict."""
    shaped = logits.ndim == 3 and token_ids.ndim == 2 and logits.shape[:2] == token_ids.shape
    if not shaped or token_ids.shape[1] < 2 or int(token_ids.max()) >= logits.shape[2]:
        return None
    log_probs = target_log_probs(logits[:, :-1], token_ids[:, 1:])
    return float(np.exp(-log_probs.mean()))


def _rows(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both logits as [positions, vocab], refusing what cannot be compared position by
    position."""
    if reference.shape != candidate.shape:
        raise AsicperfError(
            f"logit drift: reference logits {tuple(reference.shape)} and candidate "
            f"{tuple(candidate.shape)} differ in shape"
        )
    if reference.ndim < 2 or reference.size == 0:
        raise AsicperfError(
            f"logit drift: logits of shape {tuple(reference.shape)} are not [..., vocab] "
            "with at least one position"
        )
    vocab = reference.shape[-1]
    return reference.reshape(-1, vocab), candidate.reshape(-1, vocab)
