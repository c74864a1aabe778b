"""Log-probabilities from logits, in float64.

Why float64: a 49,152-token vocabulary sums tens of thousands of exponentials per position, and
perplexity and KL divergence average the logs of small probabilities over hundreds of thousands
of positions; float32 rounding there is of the size of the drift the measures are meant to see.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) over the last axis, in float64; the row maximum is subtracted first
    so no exponential overflows whatever the logits' scale."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def target_log_probs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For logits [..., vocab] and token ids [...] of the same leading shape: the
    log-probability each position gives its target token (float64, shape of `targets`)."""
    chosen = np.take_along_axis(log_softmax(logits), targets[..., None], axis=-1)
    return chosen[..., 0]
