"""The prompts a run generates from: real text, the same text the perplexity is measured on
(zoo/llm/evaluation_text.py), tokenized once and cut into windows of exactly the prompt
length, so every row of a static batch is a different passage and no padding is needed.

Each LoadGen sample is one batch; a run cycles through `PROMPT_BATCHES` of them, so a
reported latency is not one passage's."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ir.errors import AsicperfError
from zoo.llm.session_generation import PromptBatch

PROMPT_BATCHES = 4  # LoadGen's sample library: distinct batches of distinct passages


def prompt_batches(
    stream: Sequence[int], batch_size: int, prompt_len: int, count: int = PROMPT_BATCHES
) -> list[PromptBatch]:
    """`count` batches of `batch_size` windows of `prompt_len` consecutive tokens of `stream`,
    window after window (wrapping around when the text runs out)."""
    windows = len(stream) // prompt_len
    if windows < 1:
        raise AsicperfError(
            f"prompt length {prompt_len}: the prompt text has only {len(stream)} tokens"
        )
    tokens = np.asarray(stream[: windows * prompt_len], np.int64).reshape(windows, prompt_len)
    batches = []
    for sample in range(count):
        rows = [(sample * batch_size + row) % windows for row in range(batch_size)]
        ids = tokens[rows]
        batches.append(PromptBatch(ids, np.ones_like(ids)))
    return batches
