"""The LLM to benchmark and what comes with it: the ONNX decoder that targets run, and the GGUF
file its tokenizer and context length are read from (and that llama.cpp runs as the anchor).

A zoo model names its GGUF itself; a user's ONNX file needs `--gguf FILE` for its tokenizer,
because prompts and the perplexity text are real text, tokenized as the model was trained."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ir.errors import AsicperfError
from zoo.catalog import ZOO
from zoo.llm.gguf_decoder import decoder_config
from zoo.llm.gguf_file import open_gguf
from zoo.llm.tokenizer import GgufTokenizer, read_tokenizer
from zoo.model import TEXT_GENERATION
from zoo.resolve import resolve_model


@dataclass(frozen=True)
class LlmModel:
    onnx: Path
    gguf: Path
    tokenizer: GgufTokenizer
    context_length: int  # the longest prompt + generation the model was trained for


def gguf_of(model: str, gguf: str | None) -> Path:
    """The GGUF file for `model` (a zoo name or an .onnx path), checked to exist; a zoo model
    that generates no text, or a path without `--gguf`, is a one-line error."""
    if gguf is not None:
        path = Path(gguf)
        if not path.is_file():
            raise AsicperfError(f"--gguf {gguf}: no such file")
        return path
    entry = ZOO.get(model)
    if entry is None:
        raise AsicperfError(
            f"{model}: an ONNX file needs --gguf FILE, the GGUF its tokenizer is read from"
        )
    if entry.task != TEXT_GENERATION:
        raise AsicperfError(f"{model}: a {entry.task} model, not a text generator")
    missing = entry.unavailable()
    if missing:
        raise AsicperfError(f"{model} {missing}")
    path = entry.gguf_path()
    if path is None:
        raise AsicperfError(f"{model}: the zoo names no GGUF file for it")
    return path


def llm_model(model: str, gguf: str | None) -> LlmModel:
    """Everything checked before the ONNX model is built or loaded: the GGUF is read (its
    tokenizer and architecture) first, so a wrong file fails in one line at once."""
    gguf_path = gguf_of(model, gguf)
    file = open_gguf(gguf_path)
    tokenizer = read_tokenizer(file)
    context_length = decoder_config(file).context_length
    return LlmModel(resolve_model(model), gguf_path, tokenizer, context_length)
