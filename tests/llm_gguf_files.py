"""Tiny Llama decoders for the LLM tests: a config, seeded weights in the zoo's layout, and a
GGUF file written from them the way llama.cpp's converter lays tensors out, so the reader's
conversions are checked against an independent statement of that layout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from zoo.llm.config import (
    EMBED_TOKENS,
    FINAL_NORM,
    LAYER_WEIGHTS,
    LM_HEAD,
    DecoderConfig,
    layer_weight,
)

TINY = DecoderConfig(
    vocab_size=24,
    hidden_size=16,
    intermediate_size=24,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    rope_theta=10000.0,
    rms_norm_eps=2.0**-17,  # exact in float32, as GGUF stores it
    context_length=64,
    tie_embeddings=True,
)

# The zoo's per-layer weight name -> llama.cpp's tensor name in block N, written out again
# here so that a wrong entry in the reader's table cannot pass its own test.
GGUF_LAYER_NAMES = {
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


def seeded_weights(config: DecoderConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights under config.py's names and shapes, norms near 1."""
    rng = np.random.default_rng(seed)
    h, i = config.hidden_size, config.intermediate_size
    q, kv = config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim
    shapes = {
        "input_norm": (h,),
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "post_attention_norm": (h,),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        if len(shape) == 1:
            return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)

    weights = {EMBED_TOKENS: draw((config.vocab_size, h)), FINAL_NORM: draw((h,))}
    if not config.tie_embeddings:
        weights[LM_HEAD] = draw((h, config.vocab_size))
    for layer in range(config.num_layers):
        for name in LAYER_WEIGHTS:
            weights[layer_weight(layer, name)] = draw(shapes[name])
    return weights


def llama_cpp_row_order(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter on a Hugging Face [heads*d, in] query or key projection: in each
    head, the row pairing dimension i with i + d/2 moves to rows 2i and 2i + 1."""
    d = rows.shape[0] // heads
    order = [
        head * d + pair + half * (d // 2)
        for head in range(heads)
        for pair in range(d // 2)
        for half in (0, 1)
    ]
    return rows[order]


def write_llama_gguf(
    path: Path,
    config: DecoderConfig,
    weights: dict[str, np.ndarray],
    architecture: str = "llama",
    extra_metadata: Mapping[str, str | int] | None = None,
    extra_tensors: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """A GGUF file holding `config` and `weights` as llama.cpp stores them: F32 tensors,
    matrices as [out, in] rows, query and key rows in llama.cpp's rotary order; then
    `extra_metadata` (strings, and integers as uint32) and `extra_tensors` as they are."""
    import gguf  # here, so that the decoder tests that only need TINY run without it

    writer = gguf.GGUFWriter(path, architecture)
    prefix = architecture
    writer.add_uint32(f"{prefix}.block_count", config.num_layers)
    writer.add_uint32(f"{prefix}.context_length", config.context_length)
    writer.add_uint32(f"{prefix}.embedding_length", config.hidden_size)
    writer.add_uint32(f"{prefix}.feed_forward_length", config.intermediate_size)
    writer.add_uint32(f"{prefix}.attention.head_count", config.num_heads)
    writer.add_uint32(f"{prefix}.attention.head_count_kv", config.num_kv_heads)
    writer.add_float32(f"{prefix}.rope.freq_base", config.rope_theta)
    writer.add_float32(f"{prefix}.attention.layer_norm_rms_epsilon", config.rms_norm_eps)
    writer.add_uint32(f"{prefix}.rope.dimension_count", config.head_dim)
    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(config.vocab_size)])
    for key, value in (extra_metadata or {}).items():
        if isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_uint32(key, value)
    writer.add_tensor("token_embd.weight", weights[EMBED_TOKENS])
    writer.add_tensor("output_norm.weight", weights[FINAL_NORM])
    if not config.tie_embeddings:
        writer.add_tensor("output.weight", np.ascontiguousarray(weights[LM_HEAD].T))
    for layer in range(config.num_layers):
        for name, gguf_name in GGUF_LAYER_NAMES.items():
            weight = weights[layer_weight(layer, name)]
            if weight.ndim == 2:
                weight = weight.T  # [in, out] -> llama.cpp's [out, in] rows
            if name == "q_proj":
                weight = llama_cpp_row_order(weight, config.num_heads)
            if name == "k_proj":
                weight = llama_cpp_row_order(weight, config.num_kv_heads)
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", np.ascontiguousarray(weight))
    for name, tensor in (extra_tensors or {}).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
