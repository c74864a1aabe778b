"""The tokenizer rebuilt from GGUF metadata, on a hand-made ten-token vocabulary: BPE merges,
the smollm pre-tokenizer's one-digit split, control tokens matched in text, the chat template,
and one-line refusals of tokenizers it does not rebuild."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf", reason="reading GGUF needs the optional `llm` extra")
pytest.importorskip("tokenizers", reason="the tokenizer needs the optional `llm` extra")
pytest.importorskip("jinja2", reason="the chat template needs the optional `llm` extra")

from ir.errors import AsicperfError  # noqa: E402
from zoo.llm.gguf_file import GgufFile, open_gguf  # noqa: E402
from zoo.llm.tokenizer import read_tokenizer  # noqa: E402

# Byte-level symbols: 'Ġ' is the space byte. Ids 0 and 1 are control tokens (type 3).
TOKENS = ["<|endoftext|>", "<|im_start|>", "a", "b", "Ġ", "1", "2", "ab", "Ġab", "12"]
TYPES = [3, 3, 1, 1, 1, 1, 1, 1, 1, 1]
MERGES = ["a b", "Ġ ab", "1 2"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}{% endfor %}"


def _write(
    path: Path,
    pre: str = "smollm",
    model: str = "gpt2",
    template: str | None = TEMPLATE,
    add_bos: bool | None = None,
) -> GgufFile:
    writer = gguf.GGUFWriter(path, "llama")
    if add_bos is not None:
        writer.add_bool("tokenizer.ggml.add_bos_token", add_bos)
    writer.add_string("tokenizer.ggml.model", model)
    writer.add_string("tokenizer.ggml.pre", pre)
    writer.add_array("tokenizer.ggml.tokens", TOKENS)
    writer.add_array("tokenizer.ggml.token_type", TYPES)
    writer.add_array("tokenizer.ggml.merges", MERGES)
    writer.add_uint32("tokenizer.ggml.bos_token_id", 1)
    writer.add_uint32("tokenizer.ggml.eos_token_id", 0)
    if template is not None:
        writer.add_string("tokenizer.chat_template", template)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return open_gguf(path)


def test_merges_apply_and_every_digit_stays_alone(tmp_path: Path) -> None:
    tokenizer = read_tokenizer(_write(tmp_path / "t.gguf"))
    # "ab" merges, " ab" merges with its space; "12" is never merged: smollm splits digits.
    assert tokenizer.encode("ab ab12") == [7, 8, 5, 6]
    assert tokenizer.decode([7, 8, 5, 6]) == "ab ab12"


def test_control_tokens_are_matched_in_text(tmp_path: Path) -> None:
    tokenizer = read_tokenizer(_write(tmp_path / "t.gguf"))
    assert tokenizer.encode("<|im_start|>ab<|endoftext|>") == [1, 7, 0]
    assert tokenizer.decode([1, 7, 0], skip_special=True) == "ab"


def test_special_ids_and_absent_optional_ones(tmp_path: Path) -> None:
    tokenizer = read_tokenizer(_write(tmp_path / "t.gguf"))
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.unk_id) == (
        1,
        0,
        None,
        None,
    )
    assert tokenizer.add_bos is False


def test_a_model_that_asks_for_bos_gets_it_first(tmp_path: Path) -> None:
    tokenizer = read_tokenizer(_write(tmp_path / "t.gguf", add_bos=True))
    assert tokenizer.encode("ab") == [1, 7]


def test_the_chat_template_renders_messages(tmp_path: Path) -> None:
    tokenizer = read_tokenizer(_write(tmp_path / "t.gguf"))
    prompt = tokenizer.chat_prompt([{"role": "user", "content": "ab"}, {"content": "b"}])
    assert prompt == "<|im_start|>ab<|im_start|>b"
    assert tokenizer.encode(prompt) == [1, 7, 1, 3]


def test_a_file_without_a_chat_template_says_so(tmp_path: Path) -> None:
    tokenizer = read_tokenizer(_write(tmp_path / "t.gguf", template=None))
    with pytest.raises(AsicperfError, match=r"has no tokenizer\.chat_template"):
        tokenizer.chat_prompt([{"role": "user", "content": "ab"}])


def test_a_broken_chat_template_fails_in_one_line(tmp_path: Path) -> None:
    tokenizer = read_tokenizer(_write(tmp_path / "t.gguf", template="{{ messages[0].x.y }}"))
    with pytest.raises(AsicperfError, match=r"t\.gguf: its chat template failed: ") as caught:
        tokenizer.chat_prompt([{"role": "user", "content": "ab"}])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"pre": "llama-bpe"}, "pre-tokenizer 'llama-bpe' is not supported (supported: smollm)"),
        ({"model": "llama"}, "tokenizer model 'llama' is not supported"),
    ],
)
def test_refuses_tokenizers_it_does_not_rebuild(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(AsicperfError, match=re.escape(message)):
        read_tokenizer(_write(tmp_path / "t.gguf", **settings))
