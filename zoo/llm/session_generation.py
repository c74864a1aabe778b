"""Greedy generation on any target's session: static batches, padded on the left, the KV
cache carried from each call's `present` outputs to the next call's `past` inputs.

The cache grows by concatenation: the graph appends the new keys and values to the past it is
given and returns the whole cache, which the next step feeds back. That is what a standard
ONNX graph can express (it has no in-place update of an input), and onnxruntime-genai's
default for such models; a preallocated cache needs a graph written for a fixed maximum
length and buffers bound in place (IO binding), which not every target offers. The cost is
one copy of the cache per step, which the decode rates include.

A step's own time is the session call alone: tokenization happened before, and the argmax
that picks the next token (a few microseconds) after, as llama-bench times only the model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ir.errors import AsicperfError
from targets.api import Session
from zoo.llm.decoder_io import LOGITS, DecoderSignature

# How the cache grows between steps, as a result records it (see above).
KV_CACHE_GROWTH = "concatenation (each step's present outputs fed back as the next step's past)"


@dataclass(frozen=True)
class PromptBatch:
    """Prompts as one static batch: token ids [batch, length] padded on the left, and the
    attention mask (1 = a real token)."""

    ids: np.ndarray
    mask: np.ndarray

    @property
    def batch_size(self) -> int:
        return int(self.ids.shape[0])

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> PromptBatch:
    """The prompts padded on the left to the longest, so every row's newest token is in the
    last column (zoo/builders/llama.py explains why the left)."""
    if not prompts or any(len(prompt) == 0 for prompt in prompts):
        raise AsicperfError("a prompt batch needs at least one prompt, none of them empty")
    length = max(len(prompt) for prompt in prompts)
    ids = np.full((len(prompts), length), pad_id, np.int64)
    mask = np.zeros((len(prompts), length), np.int64)
    for row, prompt in enumerate(prompts):
        ids[row, length - len(prompt) :] = prompt
        mask[row, length - len(prompt) :] = 1
    return PromptBatch(ids, mask)


def prefill_feeds(signature: DecoderSignature, batch: PromptBatch) -> dict[str, np.ndarray]:
    """A decoder's inputs for `batch` from an empty cache: positions count real tokens, so a
    padded row sees what it would alone."""
    empty = np.zeros(
        (batch.batch_size, signature.kv_heads, 0, signature.head_dim), signature.cache_dtype
    )
    return {
        "input_ids": batch.ids,
        "attention_mask": batch.mask,
        "position_ids": np.maximum(np.cumsum(batch.mask, axis=1) - 1, 0),
        **{past: empty for past, _ in signature.cache_names()},
    }


@dataclass
class StepClock:
    """The session's own time per call, in ms, appended as generation goes: `prefill_ms` one
    per generated sequence batch, `decode_ms` one per later token step."""

    prefill_ms: list[float] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)


class SessionGenerator:
    """Greedy decoding of a decoder model (`signature`) through a compiled session whose
    outputs come in `output_names` order."""

    def __init__(
        self, session: Session, output_names: Sequence[str], signature: DecoderSignature
    ) -> None:
        self._session = session
        self._signature = signature
        self._outputs = {name: index for index, name in enumerate(output_names)}
        missing = [name for _, name in signature.cache_names() if name not in self._outputs]
        if LOGITS not in self._outputs or missing:
            raise AsicperfError(f"the compiled model lacks outputs {[LOGITS, *missing]}")

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Every position's logits [batch, length, vocab] for unpadded rows of token ids, from an
        empty cache (a perplexity chunk)."""
        batch = PromptBatch(ids.astype(np.int64), np.ones(ids.shape, np.int64))
        return self._run(prefill_feeds(self._signature, batch))[self._outputs[LOGITS]]

    def generate(
        self, batch: PromptBatch, new_tokens: int, clock: StepClock | None = None
    ) -> Iterator[np.ndarray]:
        """Yields each step's tokens [batch, 1] as soon as it is picked: the first from the
        prefill, then one per decode step, `new_tokens` steps in all."""
        if new_tokens < 1:
            raise AsicperfError(f"generation of {new_tokens} tokens: at least 1 needed")
        feeds = prefill_feeds(self._signature, batch)
        mask = batch.mask
        positions = np.maximum(mask.sum(axis=1, keepdims=True) - 1, 0)
        times = clock.prefill_ms if clock is not None else None
        for step in range(new_tokens):
            started = time.perf_counter()
            outputs = self._run(feeds)
            if times is not None:
                times.append((time.perf_counter() - started) * 1e3)
            tokens = outputs[self._outputs[LOGITS]][:, -1].argmax(axis=-1).astype(np.int64)
            yield tokens[:, None]
            if step + 1 == new_tokens:
                return
            mask = np.concatenate([mask, np.ones((batch.batch_size, 1), np.int64)], axis=1)
            positions = positions + 1
            feeds = {
                "input_ids": tokens[:, None],
                "attention_mask": mask,
                "position_ids": positions,
                **{
                    past: outputs[self._outputs[present]]
                    for past, present in self._signature.cache_names()
                },
            }
            times = clock.decode_ms if clock is not None else None

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(feeds)
