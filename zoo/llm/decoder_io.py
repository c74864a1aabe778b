"""What a generation loop needs to know about a decoder ONNX model, read from its graph inputs
and outputs rather than from a config, so any model with onnxruntime-genai's names runs:
`input_ids`, `attention_mask`, `position_ids` and `past_key_values.N.key|value` in,
`logits` and `present.N.key|value` out (zoo/builders/llama.py writes that layout).

The cache's head count and head size must be static dims (they size the empty past of a
prefill and the KV-cache estimate); the vocabulary is read from `logits` when static."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from ir.errors import AsicperfError

TOKEN_INPUTS = ("input_ids", "attention_mask", "position_ids")
LOGITS = "logits"
_PAST = re.compile(r"past_key_values\.(\d+)\.(key|value)")


def past_name(layer: int, kind: str) -> str:
    """The graph input holding layer `layer`'s cached keys or values (`kind`)."""
    return f"past_key_values.{layer}.{kind}"


def present_name(layer: int, kind: str) -> str:
    """The graph output holding layer `layer`'s keys or values after this call."""
    return f"present.{layer}.{kind}"


@dataclass(frozen=True)
class DecoderSignature:
    """A decoder's cache layout: `layers` pairs of key/value tensors [batch, kv_heads, length,
    head_dim] of `cache_dtype` elements."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int | None
    cache_dtype: np.dtype

    def cache_names(self) -> list[tuple[str, str]]:
        """(past input, present output) for every layer's key, then value."""
        return [
            (past_name(layer, kind), present_name(layer, kind))
            for layer in range(self.layers)
            for kind in ("key", "value")
        ]

    def kv_cache_bytes(self, batch_size: int, length: int) -> int:
        """The whole cache for `batch_size` sequences of `length` tokens."""
        per_token = 2 * self.layers * self.kv_heads * self.head_dim * self.cache_dtype.itemsize
        return batch_size * length * per_token


def decoder_signature(model: oir.Model, where: str) -> DecoderSignature:
    """The signature of `model`, or a one-line error naming `where` and what is missing."""
    inputs = {value.name: value for value in model.graph.inputs if not value.is_initializer()}
    outputs = {value.name: value for value in model.graph.outputs}
    missing = [name for name in TOKEN_INPUTS if name not in inputs]
    missing += [name for name in (LOGITS,) if name not in outputs]
    if missing:
        raise AsicperfError(
            f"{where}: not a decoder with a KV cache: no {', '.join(missing)} "
            "(expected onnxruntime-genai's input and output names)"
        )
    layers = sorted({int(m.group(1)) for name in inputs if (m := _PAST.fullmatch(name or ""))})
    if not layers or layers != list(range(len(layers))):
        raise AsicperfError(
            f"{where}: not a decoder with a KV cache: past_key_values.N.key|value inputs "
            f"numbered 0..N-1 expected, found layers {layers or 'none'}"
        )
    first = inputs[past_name(0, "key")]
    shape = first.shape
    if (
        shape is None
        or len(shape) != 4
        or not all(isinstance(d, int) for d in (shape[1], shape[3]))
    ):
        raise AsicperfError(
            f"{where}: {first.name} must be [batch, kv_heads, length, head_dim] with static "
            f"heads and head size, got {shape}"
        )
    for layer in range(len(layers)):
        for kind in ("key", "value"):
            if present_name(layer, kind) not in outputs:
                raise AsicperfError(f"{where}: no output {present_name(layer, kind)}")
    logits_shape = outputs[LOGITS].shape
    vocab = logits_shape[-1] if logits_shape is not None and len(logits_shape) == 3 else None
    return DecoderSignature(
        layers=len(layers),
        kv_heads=int(shape[1]),
        head_dim=int(shape[3]),
        vocab_size=vocab if isinstance(vocab, int) else None,
        cache_dtype=np.dtype(first.dtype.numpy() if first.dtype is not None else np.float32),
    )
