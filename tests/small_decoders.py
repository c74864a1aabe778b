"""The small Llama decoder that tests build (2 layers, 4 query heads over 2 KV heads of 8,
vocabulary 64, tied embeddings), on seeded weights: the same builder as the zoo's SmolLM2 at a
size that runs in milliseconds."""

from __future__ import annotations

import dataclasses

import onnx

from zoo.builders.llama import build_decoder, seeded_weights
from zoo.llm.config import DecoderConfig

SMALL_DECODER = DecoderConfig(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    context_length=128,
    tie_embeddings=True,
)


def small_decoder(layers: int = SMALL_DECODER.num_layers) -> onnx.ModelProto:
    """SMALL_DECODER with `layers` layers, built on seeded weights."""
    config = dataclasses.replace(SMALL_DECODER, num_layers=layers)
    return build_decoder(config, seeded_weights(config))
