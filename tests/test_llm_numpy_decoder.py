"""The numpy reference decoder on a tiny seeded Llama: the KV cache changes nothing, grouped
KV heads serve their query heads, tied and untied output projections agree, and greedy
generation is the argmax chain."""

from __future__ import annotations

import dataclasses

import numpy as np

from tests.llm_gguf_files import TINY, seeded_weights
from zoo.llm.config import EMBED_TOKENS, LM_HEAD, layer_weight
from zoo.llm.numpy_decoder import NumpyDecoder

PROMPTS = np.array([[3, 17, 5, 9, 22, 1], [8, 8, 0, 14, 2, 19]])


def test_prefill_and_token_by_token_decode_give_the_same_logits() -> None:
    decoder = NumpyDecoder(TINY, seeded_weights(TINY))

    prefill, cache = decoder.forward(PROMPTS)

    steps, past = [], None
    for position in range(PROMPTS.shape[1]):
        logits, past = decoder.forward(PROMPTS[:, position : position + 1], past)
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), prefill, atol=1e-5)
    assert prefill.shape == (2, 6, TINY.vocab_size)
    assert cache.length == past.length == 6
    assert cache.keys[0].shape == (2, TINY.num_kv_heads, 6, TINY.head_dim)
    for layer in range(TINY.num_layers):
        np.testing.assert_allclose(past.keys[layer], cache.keys[layer], atol=1e-5)
        np.testing.assert_allclose(past.values[layer], cache.values[layer], atol=1e-5)


def test_a_prompt_split_anywhere_continues_the_same_from_the_cache() -> None:
    decoder = NumpyDecoder(TINY, seeded_weights(TINY))
    whole, _ = decoder.forward(PROMPTS)
    _, cache = decoder.forward(PROMPTS[:, :4])
    rest, _ = decoder.forward(PROMPTS[:, 4:], cache)
    np.testing.assert_allclose(rest, whole[:, 4:], atol=1e-5)


def test_each_kv_head_serves_its_group_of_query_heads() -> None:
    """Grouped-query attention equals multi-head attention whose key and value heads are the
    grouped ones repeated: query heads 2g and 2g + 1 read KV head g (TINY: 4 heads, 2 KV)."""
    weights = seeded_weights(TINY)
    multi_head = dataclasses.replace(TINY, num_kv_heads=TINY.num_heads)
    repeated = dict(weights)
    d, group = TINY.head_dim, TINY.kv_group
    for layer in range(TINY.num_layers):
        for name in ("k_proj", "v_proj"):
            grouped = weights[layer_weight(layer, name)].reshape(TINY.hidden_size, -1, d)
            expanded = np.repeat(grouped, group, axis=1)  # heads g, g, g+1, g+1, ...
            repeated[layer_weight(layer, name)] = expanded.reshape(TINY.hidden_size, -1)

    grouped_logits, _ = NumpyDecoder(TINY, weights).forward(PROMPTS)
    multi_head_logits, _ = NumpyDecoder(multi_head, repeated).forward(PROMPTS)
    np.testing.assert_allclose(grouped_logits, multi_head_logits, atol=1e-5)


def test_tied_embeddings_equal_an_output_projection_of_the_transposed_table() -> None:
    tied = seeded_weights(TINY)
    untied = {**tied, LM_HEAD: np.ascontiguousarray(tied[EMBED_TOKENS].T)}
    untied_config = dataclasses.replace(TINY, tie_embeddings=False)
    np.testing.assert_allclose(
        NumpyDecoder(TINY, tied).forward(PROMPTS)[0],
        NumpyDecoder(untied_config, untied).forward(PROMPTS)[0],
        atol=1e-6,
    )
    untied[LM_HEAD] = untied[LM_HEAD] * 2.0
    doubled, _ = NumpyDecoder(untied_config, untied).forward(PROMPTS)
    np.testing.assert_allclose(
        doubled, 2.0 * NumpyDecoder(TINY, tied).forward(PROMPTS)[0], atol=1e-5
    )


def test_greedy_generation_is_the_argmax_chain_without_a_cache() -> None:
    decoder = NumpyDecoder(TINY, seeded_weights(TINY))
    prompt = PROMPTS[0].tolist()

    generated = decoder.generate_greedy(prompt, max_new_tokens=5)

    expected, sequence = [], list(prompt)
    for _ in range(5):
        logits, _ = decoder.forward(np.array([sequence]))
        expected.append(int(np.argmax(logits[0, -1])))
        sequence.append(expected[-1])
    assert generated == expected


def test_greedy_generation_stops_after_a_stop_token() -> None:
    decoder = NumpyDecoder(TINY, seeded_weights(TINY))
    prompt = PROMPTS[0].tolist()
    first = decoder.generate_greedy(prompt, max_new_tokens=1)[0]
    assert decoder.generate_greedy(prompt, max_new_tokens=5, stop_ids=[first]) == [first]
