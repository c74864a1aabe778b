"""The tokenizer a GGUF file describes, rebuilt with the `tokenizers` library: byte-level BPE
from the token list and merges, the pre-tokenizer llama.cpp names in `tokenizer.ggml.pre`, the
special token ids, and the chat template (Jinja) that turns messages into a prompt.

Control tokens (`<|im_start|>`, `<|endoftext|>`, ...) are matched in the text, as llama.cpp
does when it tokenizes a formatted chat prompt: the template writes them as text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from ir.errors import AsicperfError
from zoo.llm.gguf_file import GgufFile

BYTE_LEVEL_BPE = "gpt2"  # llama.cpp's name for the byte-level BPE model in tokenizer.ggml.model
CONTROL_TOKEN = 3  # llama.cpp's token type of special tokens (tokenizer.ggml.token_type)


def _smollm_split() -> pre_tokenizers.PreTokenizer:
    """llama.cpp's `smollm` pre-tokenizer: every digit on its own, then GPT-2's split
    (contractions, letters, numbers, punctuation runs, whitespace) and the byte mapping."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


# tokenizer.ggml.pre -> the equivalent `tokenizers` pre-tokenizer.
PRE_TOKENIZERS: dict[str, Callable[[], pre_tokenizers.PreTokenizer]] = {"smollm": _smollm_split}


@dataclass(frozen=True)
class GgufTokenizer:
    """Text <-> token ids for a GGUF model, and its chat prompt format."""

    source: Path
    backend: Tokenizer
    bos_id: int
    eos_id: int
    pad_id: int | None
    unk_id: int | None
    add_bos: bool
    chat_template: str | None

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, control tokens written in it included, after the BOS id when
        the model asks for one (tokenizer.ggml.add_bos_token)."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if self.add_bos else ids

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token(self, token_id: int) -> str:
        """The vocabulary entry of `token_id` as stored (byte-level: a space shows as 'Ġ')."""
        return self.backend.id_to_token(token_id)

    def chat_prompt(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """`messages` ({"role", "content"} each) formatted by the model's chat template, ending
        with the assistant's turn opened when `add_generation_prompt`. Encode the result with
        `encode` and generate from it; the reply ends with the EOS id (`<|im_end|>` here)."""
        if self.chat_template is None:
            raise AsicperfError(f"{self.source}: the GGUF file has no tokenizer.chat_template")
        # The template comes from the model file: render it in Jinja's sandbox, with the
        # whitespace handling Hugging Face's apply_chat_template uses.
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        try:
            return environment.from_string(self.chat_template).render(
                messages=list(messages),
                add_generation_prompt=add_generation_prompt,
                bos_token=self.token(self.bos_id),
                eos_token=self.token(self.eos_id),
            )
        except jinja2.TemplateError as error:
            raise AsicperfError(f"{self.source}: its chat template failed: {error}") from None


def read_tokenizer(file: GgufFile) -> GgufTokenizer:
    """The tokenizer stored in `file`'s metadata."""
    model = file.text("tokenizer.ggml.model")
    if model != BYTE_LEVEL_BPE:
        raise AsicperfError(
            f"{file.path}: tokenizer model {model!r} is not supported "
            f"(only byte-level BPE, {BYTE_LEVEL_BPE!r})"
        )
    pre = file.text("tokenizer.ggml.pre")
    if pre not in PRE_TOKENIZERS:
        raise AsicperfError(
            f"{file.path}: pre-tokenizer {pre!r} is not supported "
            f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})"
        )
    tokens = file.texts("tokenizer.ggml.tokens")
    merges = [tuple(merge.split(" ", 1)) for merge in file.texts("tokenizer.ggml.merges")]
    backend = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    backend.pre_tokenizer = PRE_TOKENIZERS[pre]()
    backend.decoder = decoders.ByteLevel()
    types = file.integers("tokenizer.ggml.token_type")
    backend.add_special_tokens(
        [
            AddedToken(token, special=True, normalized=False)
            for token, kind in zip(tokens, types, strict=True)
            if kind == CONTROL_TOKEN
        ]
    )

    def optional_id(key: str) -> int | None:
        return file.integer(key) if file.has(key) else None

    add_bos = file.has("tokenizer.ggml.add_bos_token") and file.flag("tokenizer.ggml.add_bos_token")
    template = "tokenizer.chat_template"
    return GgufTokenizer(
        source=file.path,
        backend=backend,
        bos_id=file.integer("tokenizer.ggml.bos_token_id"),
        eos_id=file.integer("tokenizer.ggml.eos_token_id"),
        pad_id=optional_id("tokenizer.ggml.padding_token_id"),
        unk_id=optional_id("tokenizer.ggml.unknown_token_id"),
        add_bos=add_bos,
        chat_template=file.text(template) if file.has(template) else None,
    )
