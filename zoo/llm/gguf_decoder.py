"""A Llama-architecture decoder read from GGUF: the architecture from the metadata, the weights
dequantized to float32 and converted to zoo/llm/config.py's names and layouts.

Two conversions matter. ggml stores a matrix with ne = [in, out], which numpy reads as
[out, in]: the zoo's layout for `x @ W` is its transpose. And llama.cpp's converter reorders
each head's query and key rows from Hugging Face's rotate-half pairs (dimension i with
i + d/2) to adjacent pairs (2i with 2i + 1), the layout its own rotary kernel expects; the
reader puts them back, so the ONNX builder and the numpy reference both see rotate-half.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ir.errors import AsicperfError
from zoo.llm.config import (
    EMBED_TOKENS,
    FINAL_NORM,
    LM_HEAD,
    DecoderConfig,
    weight_shapes,
)
from zoo.llm.gguf_file import GgufFile, open_gguf

ARCHITECTURE = "llama"

# The zoo's per-layer weight name -> llama.cpp's tensor name inside block N.
_LAYER_TENSORS = {
    "input_norm": "attn_norm",
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "post_attention_norm": "ffn_norm",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
_MODEL_TENSORS = {EMBED_TOKENS: "token_embd", FINAL_NORM: "output_norm", LM_HEAD: "output"}
_NORMS = frozenset({"input_norm", "post_attention_norm"})
_SIZES = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
)


def read_decoder(path: str | Path) -> tuple[DecoderConfig, dict[str, np.ndarray]]:
    """The architecture and float32 weights of the Llama GGUF at `path`."""
    file = open_gguf(path)
    config = decoder_config(file)
    return config, decoder_weights(file, config)


def decoder_config(file: GgufFile) -> DecoderConfig:
    """The architecture from the GGUF metadata; refuses other architectures and Llama variants
    this decoder does not implement (scaled or partial rotary, odd head sizes)."""
    architecture = file.text("general.architecture")
    if architecture != ARCHITECTURE:
        raise AsicperfError(
            f"{file.path}: GGUF architecture is {architecture!r}, expected {ARCHITECTURE!r}"
        )

    def key(name: str) -> str:
        return f"{ARCHITECTURE}.{name}"

    config = DecoderConfig(
        vocab_size=len(file.texts("tokenizer.ggml.tokens")),
        hidden_size=file.integer(key("embedding_length")),
        intermediate_size=file.integer(key("feed_forward_length")),
        num_layers=file.integer(key("block_count")),
        num_heads=file.integer(key("attention.head_count")),
        num_kv_heads=file.integer(key("attention.head_count_kv")),
        rope_theta=file.real(key("rope.freq_base")),
        rms_norm_eps=file.real(key("attention.layer_norm_rms_epsilon")),
        context_length=file.integer(key("context_length")),
        tie_embeddings=f"{_MODEL_TENSORS[LM_HEAD]}.weight" not in file.tensor_names(),
    )
    for size in _SIZES:
        if getattr(config, size) <= 0:
            raise AsicperfError(f"{file.path}: the GGUF metadata gives {size} = 0")
    if config.hidden_size % (2 * config.num_heads) or config.num_heads % config.num_kv_heads:
        raise AsicperfError(
            f"{file.path}: hidden size {config.hidden_size} does not split into "
            f"{config.num_heads} heads of an even size shared by {config.num_kv_heads} KV heads"
        )
    for sized in ("rope.dimension_count", "attention.key_length", "attention.value_length"):
        if file.has(key(sized)) and file.integer(key(sized)) != config.head_dim:
            raise AsicperfError(
                f"{file.path}: {key(sized)} is {file.integer(key(sized))}, but this decoder "
                f"needs it equal to the head size {config.head_dim}"
            )
    if file.has(key("rope.scaling.type")) and file.text(key("rope.scaling.type")) != "none":
        raise AsicperfError(
            f"{file.path}: rotary scaling {file.text(key('rope.scaling.type'))!r} is not "
            "supported (only unscaled rotary position embedding)"
        )
    return config


def decoder_weights(file: GgufFile, config: DecoderConfig) -> dict[str, np.ndarray]:
    """Every weight as float32 under config.py's names, matrices as [in, out], query and key
    columns in rotate-half order. Refuses tensors it does not know (experts, rotary factors)
    and shapes that disagree with `config`."""
    shapes = weight_shapes(config)
    sources = {name: _gguf_tensor_name(name) for name in shapes}
    unknown = sorted(set(file.tensor_names()) - set(sources.values()))
    if unknown:
        raise AsicperfError(
            f"{file.path}: unexpected tensor {unknown[0]} for a plain Llama decoder "
            f"({len(unknown)} unknown in all)"
        )
    weights = {}
    for name, source in sources.items():
        stored = file.tensor(source)
        kept = _kept_as_stored(name)
        expected = shapes[name][:: 1 if kept else -1]
        if stored.shape != expected:
            raise AsicperfError(
                f"{file.path}: tensor {source} has shape {list(stored.shape)} (numpy order), "
                f"expected {list(expected)} for {name} of this architecture"
            )
        weights[name] = stored if kept else _matrix_in_zoo_layout(stored, name, config)
    return weights


def _gguf_tensor_name(name: str) -> str:
    """The GGUF tensor that the zoo's weight `name` comes from: `layers.N.kind` is in block N."""
    if name in _MODEL_TENSORS:
        return f"{_MODEL_TENSORS[name]}.weight"
    _, layer, kind = name.split(".")
    return f"blk.{layer}.{_LAYER_TENSORS[kind]}.weight"


def _kept_as_stored(name: str) -> bool:
    """Vectors, and the embedding table [vocab, hidden] that is gathered, not multiplied."""
    return name in (EMBED_TOKENS, FINAL_NORM) or name.rsplit(".", 1)[-1] in _NORMS


def _matrix_in_zoo_layout(stored: np.ndarray, name: str, config: DecoderConfig) -> np.ndarray:
    """A projection stored [out, in] (adjacent rotary pairs for query and key) as [in, out]
    with rotate-half columns."""
    kind = name.rsplit(".", 1)[-1]
    if kind == "q_proj":
        stored = rotate_half_rows(stored, config.num_heads)
    elif kind == "k_proj":
        stored = rotate_half_rows(stored, config.num_kv_heads)
    return np.ascontiguousarray(stored.T)


def rotate_half_rows(rows: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary permutation of a [heads*d, in] projection: within each head,
    stored row 2i+j (adjacent pairs) becomes row j*d/2 + i (rotate-half pairs)."""
    half = rows.shape[0] // heads // 2
    return rows.reshape(heads, half, 2, -1).swapaxes(1, 2).reshape(rows.shape)
