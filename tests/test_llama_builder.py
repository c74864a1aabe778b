"""The Llama decoder builder: a valid, loadable graph with the onnxruntime-genai I/O, whose KV
cache gives the same logits as a full prefill, whose left padding changes nothing for the real
tokens, and whose numbers match numpy written from the architecture's definition."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from small_decoders import SMALL_DECODER

from ir.errors import AsicperfError
from ir.model_io import load_model
from ir.ops import node_cost
from ir.verifier import verify
from zoo.builders.llama import build_decoder, seeded_weights
from zoo.llm.config import (
    EMBED_TOKENS,
    FINAL_NORM,
    LM_HEAD,
    DecoderConfig,
    layer_weight,
    weight_shapes,
)
from zoo.llm.decoder_io import past_name, present_name
from zoo.llm.numpy_decoder import KVCache, NumpyDecoder

SMALL = SMALL_DECODER
ONE_LAYER = dataclasses.replace(SMALL, num_layers=1)
TOKENS = np.array([5, 17, 3, 42, 8, 60, 1])


class Session:
    """An onnxruntime session of a built decoder, fed the way a generation loop feeds it."""

    def __init__(self, model: onnx.ModelProto, config: DecoderConfig) -> None:
        self.config = config
        self.session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )

    def empty_cache(self, batch: int) -> dict[str, np.ndarray]:
        shape = (batch, self.config.num_kv_heads, 0, self.config.head_dim)
        return {
            past_name(layer, kind): np.zeros(shape, np.float32)
            for layer in range(self.config.num_layers)
            for kind in ("key", "value")
        }

    def run(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        cache: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits and the next call's cache (this call's presents as pasts)."""
        feeds = {
            "input_ids": np.asarray(input_ids, np.int64),
            "attention_mask": np.asarray(attention_mask, np.int64),
            "position_ids": np.asarray(position_ids, np.int64),
            **cache,
        }
        names = [output.name for output in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(None, feeds), strict=True))
        presents = {
            past_name(layer, kind): outputs[present_name(layer, kind)]
            for layer in range(self.config.num_layers)
            for kind in ("key", "value")
        }
        return outputs["logits"], presents

    def prefill(self, tokens: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One unpadded row in one call."""
        count = len(tokens)
        return self.run(
            tokens[None], np.ones((1, count)), np.arange(count)[None], self.empty_cache(1)
        )


@pytest.fixture(scope="module")
def small() -> Session:
    return Session(build_decoder(SMALL, seeded_weights(SMALL, seed=1)), SMALL)


def test_graph_io_is_named_and_shaped_as_onnxruntime_genai_expects():
    model = build_decoder(SMALL, seeded_weights(SMALL))
    onnx.checker.check_model(model, full_check=True)

    def described(values):
        return {
            value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in values
        }

    cache = ["batch", 2, "past_sequence_length", 8]
    present = ["batch", 2, "total_sequence_length", 8]
    assert described(model.graph.input) == {
        "input_ids": ["batch", "sequence_length"],
        "attention_mask": ["batch", "total_sequence_length"],
        "position_ids": ["batch", "sequence_length"],
        "past_key_values.0.key": cache,
        "past_key_values.0.value": cache,
        "past_key_values.1.key": cache,
        "past_key_values.1.value": cache,
    }
    assert described(model.graph.output) == {
        "logits": ["batch", "sequence_length", 64],
        "present.0.key": present,
        "present.0.value": present,
        "present.1.key": present,
        "present.1.value": present,
    }


def test_standard_ops_only_and_a_fixed_count_per_layer():
    """Each layer adds the same nodes; no contrib domain; the graph is what the docs say."""

    def histogram(config: DecoderConfig) -> collections.Counter[str]:
        model = build_decoder(config, seeded_weights(config))
        assert {node.domain for node in model.graph.node} == {""}
        return collections.Counter(node.op_type for node in model.graph.node)

    per_layer = histogram(SMALL) - histogram(ONE_LAYER)
    assert per_layer == {
        # RMSNorm x2: Pow, ReduceMean, Add, Sqrt, Reciprocal, Mul, Mul
        "Pow": 2, "ReduceMean": 2, "Sqrt": 2, "Reciprocal": 2,
        # projections: q, k, v, o, gate, up, down; scores and context
        "MatMul": 9,
        # shape chains of the head split (3), merge (1) and K/V repeat (2); Concat also
        # joins the rotary halves (2) and appends to the cache (2)
        "Shape": 12, "Gather": 12, "Unsqueeze": 14, "Concat": 10, "Reshape": 6,
        "Transpose": 5, "Expand": 2,
        # rotary on Q and K: two Slices, Neg, Concat (counted above), Mul x2, Add
        "Slice": 4, "Neg": 2,
        # Mul: rms 4, rotary 4, SiLU 1, gate*up 1; Add: rms eps 2, rotary 2, bias 1, residual 2
        "Mul": 10, "Add": 7, "Div": 1, "Softmax": 1, "Sigmoid": 1,
    }  # fmt: skip
    assert sum(per_layer.values()) == 104


def test_tied_output_projection_stores_the_embedding_table_once():
    tied = build_decoder(SMALL, seeded_weights(SMALL))
    table_size = SMALL.vocab_size * SMALL.hidden_size
    assert [t.name for t in tied.graph.initializer if np.prod(t.dims) == table_size] == [
        EMBED_TOKENS
    ]
    untied = dataclasses.replace(SMALL, tie_embeddings=False)
    model = build_decoder(untied, seeded_weights(untied))
    assert {EMBED_TOKENS, LM_HEAD} <= {t.name for t in model.graph.initializer}
    assert "Transpose" not in {n.op_type for n in model.graph.node if n.output[0] == "logits"}


def test_loads_verifies_and_costs_every_node_once_dims_are_bound(tmp_path):
    path = tmp_path / "decoder.onnx"
    onnx.save(build_decoder(SMALL, seeded_weights(SMALL)), path)
    assert verify(load_model(path)) == []
    dims = {"batch": 2, "sequence_length": 3, "past_sequence_length": 4}
    model = load_model(path, bindings={**dims, "total_sequence_length": 7})
    costs = {node.name: node_cost(node) for node in model.graph}
    assert [name for name, cost in costs.items() if cost is None] == []
    query_projection = next(
        node for node in model.graph if layer_weight(0, "q_proj") in [v.name for v in node.inputs]
    )
    assert costs[query_projection.name].flops == 2 * (2 * 3) * 32 * 32
    scores = next(node for node in model.graph if node.op_type == "Softmax")
    assert list(scores.outputs[0].shape) == [2, 4, 3, 7]


@pytest.mark.parametrize("chunks", [(1,) * 7, (4, 3), (2, 1, 4)])
def test_cached_steps_give_the_logits_of_one_prefill(small, chunks):
    expected, _ = small.prefill(TOKENS)
    cache, seen, logits = small.empty_cache(1), 0, []
    for size in chunks:
        step = TOKENS[seen : seen + size]
        positions = np.arange(seen, seen + size)[None]
        out, cache = small.run(step[None], np.ones((1, seen + size)), positions, cache)
        logits.append(out)
        seen += size
    assert cache[past_name(1, "value")].shape == (1, 2, 7, 8)
    np.testing.assert_allclose(np.concatenate(logits, axis=1), expected, atol=1e-5)


def test_left_padded_rows_match_each_row_alone_in_prefill_and_decode(small):
    short, full = TOKENS[:4], TOKENS
    pad = len(full) - len(short)
    ids = np.stack([np.concatenate([np.zeros(pad, np.int64), short]), full])
    mask = np.stack([np.r_[np.zeros(pad), np.ones(len(short))], np.ones(len(full))])
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    logits, cache = small.run(ids, mask, positions, small.empty_cache(2))
    assert np.isfinite(logits).all()  # padding queries see no key: lowest score, no NaN

    alone_short, short_cache = small.prefill(short)
    alone_full, full_cache = small.prefill(full)
    np.testing.assert_allclose(logits[0, pad:], alone_short[0], atol=1e-5)
    np.testing.assert_allclose(logits[1], alone_full[0], atol=1e-5)

    step = np.array([[9], [9]])
    mask = np.concatenate([mask, np.ones((2, 1))], axis=1)
    after, _ = small.run(step, mask, positions[:, -1:] + 1, cache)
    short_after, _ = small.run(step[:1], np.ones((1, 5)), [[4]], short_cache)
    full_after, _ = small.run(step[:1], np.ones((1, 8)), [[7]], full_cache)
    np.testing.assert_allclose(after[0], short_after[0], atol=1e-5)
    np.testing.assert_allclose(after[1], full_after[0], atol=1e-5)


def _one_layer_logits(
    weights: Mapping[str, np.ndarray], tokens: np.ndarray, positions: np.ndarray
) -> np.ndarray:
    """A 1-layer ONE_LAYER decoder in float64 numpy, rotary as complex rotation of the pairs
    (i, i + d/2), K/V heads repeated with np.repeat, causal mask with triu."""
    c = ONE_LAYER
    w = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    count, d = len(tokens), c.head_dim

    def norm(x, weight):
        return x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + c.rms_norm_eps) * weight

    def rope(x):  # x [seq, heads, d]
        angle = positions[:, None] * c.rope_theta ** (-np.arange(d // 2) * 2 / d)
        turned = (x[..., : d // 2] + 1j * x[..., d // 2 :]) * np.exp(1j * angle)[:, None, :]
        return np.concatenate([turned.real, turned.imag], axis=-1)

    x = w[EMBED_TOKENS][tokens]
    h = norm(x, w[layer_weight(0, "input_norm")])
    q = rope((h @ w[layer_weight(0, "q_proj")]).reshape(count, c.num_heads, d))
    k = rope((h @ w[layer_weight(0, "k_proj")]).reshape(count, c.num_kv_heads, d))
    v = (h @ w[layer_weight(0, "v_proj")]).reshape(count, c.num_kv_heads, d)
    k, v = np.repeat(k, c.kv_group, axis=1), np.repeat(v, c.kv_group, axis=1)
    scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d)
    scores[:, np.triu(np.ones((count, count), bool), k=1)] = -np.inf
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    context = np.einsum("hqk,khd->qhd", probs, v).reshape(count, c.hidden_size)
    x = x + context @ w[layer_weight(0, "o_proj")]
    h = norm(x, w[layer_weight(0, "post_attention_norm")])
    gate = h @ w[layer_weight(0, "gate_proj")]
    x = (
        x
        + (gate / (1 + np.exp(-gate)) * (h @ w[layer_weight(0, "up_proj")]))
        @ w[layer_weight(0, "down_proj")]
    )
    return norm(x, w[FINAL_NORM]) @ w[EMBED_TOKENS].T


def test_one_layer_matches_an_independent_numpy_computation():
    weights = seeded_weights(ONE_LAYER, seed=2)
    session = Session(build_decoder(ONE_LAYER, weights), ONE_LAYER)
    positions = np.arange(3, 3 + len(TOKENS))  # rotary at positions other than the slots
    logits, _ = session.run(
        TOKENS[None], np.ones((1, len(TOKENS))), positions[None], session.empty_cache(1)
    )
    np.testing.assert_allclose(logits[0], _one_layer_logits(weights, TOKENS, positions), atol=1e-4)


def test_matches_the_numpy_reference_decoder_in_prefill_and_decode():
    untied = dataclasses.replace(SMALL, tie_embeddings=False, num_kv_heads=1)
    weights = seeded_weights(untied, seed=3)
    session = Session(build_decoder(untied, weights), untied)
    reference = NumpyDecoder(untied, weights)
    batch = np.stack([TOKENS, TOKENS[::-1]])
    positions = np.tile(np.arange(7), (2, 1))
    logits, cache = session.run(batch, np.ones((2, 7)), positions, session.empty_cache(2))
    expected, reference_cache = reference.forward(batch, KVCache.empty(untied, 2))
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    step = np.array([[11], [12]])
    logits, _ = session.run(step, np.ones((2, 8)), np.full((2, 1), 7), cache)
    expected, _ = reference.forward(step, reference_cache)
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_opset_18_spells_reduce_mean_axes_as_an_input_and_agrees(small):
    model = build_decoder(SMALL, seeded_weights(SMALL, seed=1), opset=18)
    reduce_mean = next(node for node in model.graph.node if node.op_type == "ReduceMean")
    assert len(reduce_mean.input) == 2
    expected, _ = small.prefill(TOKENS)
    logits, _ = Session(model, SMALL).prefill(TOKENS)
    np.testing.assert_allclose(logits, expected, atol=1e-6)


def test_weight_shapes_follow_the_config_names():
    shapes = weight_shapes(SMALL)
    assert len(shapes) == 2 + 9 * SMALL.num_layers
    assert shapes[layer_weight(1, "k_proj")] == (32, 16)
    assert shapes[layer_weight(1, "o_proj")] == (32, 32)
    assert shapes[layer_weight(0, "down_proj")] == (48, 32)
    assert LM_HEAD not in shapes


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda w: w.pop(layer_weight(1, "up_proj")), "'layers.1.up_proj' is missing"),
        (
            lambda w: w.update({layer_weight(0, "k_proj"): np.zeros((32, 32))}),
            "'layers.0.k_proj' has shape [32, 32], the config needs [32, 16]",
        ),
    ],
)
def test_missing_or_misshapen_weights_are_named(edit, message):
    weights = seeded_weights(SMALL)
    edit(weights)
    with pytest.raises(AsicperfError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_decoder(SMALL, weights)


def test_configs_the_graph_cannot_express_are_refused():
    bad = dataclasses.replace(SMALL, num_kv_heads=3)
    with pytest.raises(AsicperfError, match="4 heads do not group over 3"):
        build_decoder(bad, {})
    with pytest.raises(AsicperfError, match="num_kv_heads must be at least 1"):
        build_decoder(dataclasses.replace(SMALL, num_kv_heads=0), {})
    with pytest.raises(AsicperfError, match="opset 12 is below 13"):
        build_decoder(SMALL, seeded_weights(SMALL), opset=12)
