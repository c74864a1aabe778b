"""English sentences written for the zoo (paraphrase pairs among unrelated ones), tokenized
with all-MiniLM-L6-v2's own tokenizer so the sentence-embedding model has real inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SENTENCES: tuple[str, ...] = tuple(
    (Path(__file__).with_name("sentences.txt")).read_text(encoding="utf-8").splitlines()
)


def tokenize(sentences: tuple[str, ...] = SENTENCES, seq: int = 128) -> dict[str, np.ndarray]:
    """`input_ids`, `attention_mask`, `token_type_ids` (int64 [len(sentences), seq]), padded
    and truncated to `seq` as the model's graph expects a fixed length."""
    from tokenizers import Tokenizer

    from zoo.builders.minilm import model_dir

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(seq)
    tokenizer.enable_padding(length=seq)
    encodings = tokenizer.encode_batch(list(sentences))
    return {
        "input_ids": np.array([e.ids for e in encodings], np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], np.int64),
    }
