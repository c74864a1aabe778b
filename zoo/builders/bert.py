"""BERT-style encoders: BERT-base (seq 128) and ALBERT-base, as torch exports them.

Embeddings (word + position Gather, LayerNorm), then per layer: Q/K/V projections, head split,
scaled scores plus the extended mask (1 - m) * -10000, Softmax, head merge, output projection,
residual + LayerNorm, GELU feed-forward, residual + LayerNorm. ALBERT factorizes the embedding
(vocab x 128, projected to hidden) and shares one layer's parameters across all layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper

from zoo.builders.graph_builder import GraphBuilder


def build_bert(
    *,
    layers: int = 12,
    hidden: int = 768,
    heads: int = 12,
    intermediate: int | None = None,
    seq: int | str = 128,
    batch: int | str = "batch",
    vocab: int = 30522,
    embedding_size: int | None = None,
    share_layers: bool = False,
    opset: int = 14,
    gelu: str = "erf",
    seed: int = 0,
    token_types: int = 0,
    pool: bool = False,
    weights: Iterable[np.ndarray] | None = None,
) -> onnx.ModelProto:
    """Inputs `input_ids`, `attention_mask` (int64 [batch, seq], 1 = keep); output
    `last_hidden_state` (float [batch, seq, hidden]). `embedding_size` < hidden and
    `share_layers` give ALBERT. `token_types` > 0 adds a `token_type_ids` input; `pool` outputs
    `sentence_embedding` [batch, hidden] instead, mean-pooled over the mask and L2-normalized
    (sentence-transformers); `weights` are trained parameters in creation order (Linear
    weights as [in, out]) to use instead of seeded ones."""
    b = GraphBuilder(opset, seed, weights)
    inner = intermediate or 4 * hidden
    width = embedding_size or hidden
    max_positions = seq if isinstance(seq, int) else 512
    words = b.op("Gather", [b.weight("word_embeddings", (vocab, width)), "input_ids"])
    positions = b.op(
        "Slice",
        [
            b.const("position_ids", np.arange(max_positions)[None, :]),
            b.const("start", np.array([0])),
            b.dim("input_ids", 1),
            b.const("axis", np.array([1])),
        ],
    )
    placed = b.op("Gather", [b.weight("position_embeddings", (max_positions, width)), positions])
    embedded = b.op("Add", [words, placed])
    if token_types:
        table = b.weight("token_type_embeddings", (token_types, width))
        embedded = b.op("Add", [embedded, b.op("Gather", [table, "token_type_ids"])])
    state = b.layer_norm(embedded, width)
    if width != hidden:
        state = b.linear(state, width, hidden)
    keep = b.op("Cast", [b.unsqueeze(b.unsqueeze("attention_mask", [1]), [2])], to=1)
    inverted = b.op("Sub", [b.const("one", np.array(1.0, np.float32)), keep])
    mask = b.op("Mul", [inverted, b.const("min", np.array(-10000.0, np.float32))])
    for _ in range(layers):
        with b.shared_layer() if share_layers else contextlib.nullcontext():
            attended = b.attention(state, mask, hidden, heads)
            state = b.layer_norm(b.op("Add", [attended, state]), hidden)
            expanded = b.gelu(b.linear(state, hidden, inner), gelu)
            state = b.layer_norm(b.op("Add", [b.linear(expanded, inner, hidden), state]), hidden)
    inputs = ["input_ids", "attention_mask", *(["token_type_ids"] * bool(token_types))]
    if pool:
        _sentence_embedding(b, state)
    output, shape = (
        ("sentence_embedding", [batch, hidden])
        if pool
        else ("last_hidden_state", [batch, seq, hidden])
    )
    b.nodes[-1].output[0] = output
    return b.model(
        "albert" if share_layers else "bert",
        [helper.make_tensor_value_info(name, TensorProto.INT64, [batch, seq]) for name in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)],
    )


def _reduce_sum(b: GraphBuilder, value: str, axis: int) -> str:
    if b.opset >= 13:
        return b.op("ReduceSum", [value, b.const("axes", np.array([axis]))])
    return b.op("ReduceSum", [value], axes=[axis])


def _sentence_embedding(b: GraphBuilder, state: str) -> None:
    """sentence-transformers' head: mean over kept tokens, then divide by the L2 norm."""
    keep = b.op("Cast", [b.unsqueeze("attention_mask", [2])], to=1)
    total = _reduce_sum(b, b.op("Mul", [state, keep]), 1)
    count = b.op("Max", [_reduce_sum(b, keep, 1), b.const("min_count", np.array(1e-9, "f4"))])
    mean = b.op("Div", [total, count])
    norm = b.op("Sqrt", [_reduce_sum(b, b.op("Mul", [mean, mean]), -1)])
    norm = b.op("Max", [norm, b.const("min_norm", np.array(1e-12, np.float32))])
    b.op("Flatten", [b.op("Div", [mean, norm])], axis=1)
