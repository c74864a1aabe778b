"""A Llama-architecture decoder's forward pass in plain numpy: the reference that the ONNX
builder is checked against, so it is written for reading, from the architecture's definition
(RMSNorm, rotate-half rotary position embedding, grouped-query causal attention with a KV
cache, SwiGLU MLP), sharing no code with the builder.

One batch of equal-length sequences (no padding). The cache grows by concatenation: the
reference favours plain data flow over speed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from zoo.llm.config import (
    EMBED_TOKENS,
    FINAL_NORM,
    LAYER_WEIGHTS,
    LM_HEAD,
    DecoderConfig,
    layer_weight,
)


@dataclass(frozen=True)
class KVCache:
    """Each layer's rotated keys and its values, [batch, kv_heads, seq, head_dim], for the
    tokens seen so far: what ONNX's `present.N.key|value` outputs hold."""

    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    @classmethod
    def empty(cls, config: DecoderConfig, batch: int) -> KVCache:
        shape = (batch, config.num_kv_heads, 0, config.head_dim)
        layers = range(config.num_layers)
        return cls(
            tuple(np.zeros(shape, np.float32) for _ in layers),
            tuple(np.zeros(shape, np.float32) for _ in layers),
        )


class NumpyDecoder:
    """The forward pass of `config` with `weights` (zoo/llm/config.py's names and layouts)."""

    def __init__(self, config: DecoderConfig, weights: Mapping[str, np.ndarray]) -> None:
        self.config = config
        self.weights = weights

    def forward(
        self, input_ids: np.ndarray, past: KVCache | None = None
    ) -> tuple[np.ndarray, KVCache]:
        """Logits [batch, seq, vocab] for `input_ids` [batch, seq] that follow the `past`
        tokens, and the cache grown by them. A prompt in one call (prefill) and the same
        prompt one token per call (decode) give the same logits."""
        ids = np.asarray(input_ids)
        past = past if past is not None else KVCache.empty(self.config, ids.shape[0])
        positions = past.length + np.arange(ids.shape[1])
        cos, sin = self._rotary(positions)
        hidden = self.weights[EMBED_TOKENS][ids]
        keys, values = [], []
        for layer in range(self.config.num_layers):
            w = {name: self.weights[layer_weight(layer, name)] for name in LAYER_WEIGHTS}
            attended, key, value = self._attention(
                self._rms_norm(hidden, w["input_norm"]),
                w,
                cos,
                sin,
                past.keys[layer],
                past.values[layer],
            )
            hidden = hidden + attended
            hidden = hidden + self._mlp(self._rms_norm(hidden, w["post_attention_norm"]), w)
            keys.append(key)
            values.append(value)
        hidden = self._rms_norm(hidden, self.weights[FINAL_NORM])
        head = self.weights[EMBED_TOKENS].T if self.config.tie_embeddings else self.weights[LM_HEAD]
        return hidden @ head, KVCache(tuple(keys), tuple(values))

    def generate_greedy(
        self, prompt_ids: Sequence[int], max_new_tokens: int, stop_ids: Sequence[int] = ()
    ) -> list[int]:
        """The `max_new_tokens` most likely next tokens, one at a time (prefill, then one
        decode step per token), ending early after a token in `stop_ids`."""
        logits, cache = self.forward(np.array([prompt_ids], np.int64))
        generated: list[int] = []
        while len(generated) < max_new_tokens:
            token = int(np.argmax(logits[0, -1]))
            generated.append(token)
            if token in stop_ids:
                break
            logits, cache = self.forward(np.array([[token]], np.int64), cache)
        return generated

    def _rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        mean_square = np.mean(x * x, axis=-1, keepdims=True)
        return x / np.sqrt(mean_square + self.config.rms_norm_eps) * weight

    def _rotary(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cos and sin [seq, head_dim] of each position's angles: dimension i and i + d/2
        rotate together by position * theta^(-2i/d)."""
        d = self.config.head_dim
        inverse_frequency = self.config.rope_theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        angles = positions[:, None].astype(np.float64) * inverse_frequency[None, :]
        angles = np.concatenate([angles, angles], axis=-1)
        return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)

    @staticmethod
    def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """Rotate-half rotary embedding of x [batch, heads, seq, head_dim]."""
        first, second = np.split(x, 2, axis=-1)
        return x * cos + np.concatenate([-second, first], axis=-1) * sin

    def _heads(self, x: np.ndarray, heads: int) -> np.ndarray:
        """[batch, seq, heads*d] -> [batch, heads, seq, d]."""
        batch, seq, _ = x.shape
        return x.reshape(batch, seq, heads, self.config.head_dim).transpose(0, 2, 1, 3)

    def _attention(
        self,
        x: np.ndarray,
        w: Mapping[str, np.ndarray],
        cos: np.ndarray,
        sin: np.ndarray,
        past_key: np.ndarray,
        past_value: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Causal grouped-query attention of x [batch, seq, hidden] over the past and itself:
        (output [batch, seq, hidden], keys and values including x's)."""
        c = self.config
        batch, seq, _ = x.shape
        query = self._rotate(self._heads(x @ w["q_proj"], c.num_heads), cos, sin)
        key = self._rotate(self._heads(x @ w["k_proj"], c.num_kv_heads), cos, sin)
        value = self._heads(x @ w["v_proj"], c.num_kv_heads)
        key = np.concatenate([past_key, key], axis=2)
        value = np.concatenate([past_value, value], axis=2)
        total = key.shape[2]
        # Query heads g*kv_group .. (g+1)*kv_group - 1 share key/value head g.
        grouped = query.reshape(batch, c.num_kv_heads, c.kv_group, seq, c.head_dim)
        # A Python float scale: a numpy float64 one would promote everything after to float64.
        scores = grouped @ key[:, :, None].swapaxes(-1, -2) / math.sqrt(c.head_dim)
        # Query i sits at position total - seq + i and sees keys up to that position.
        future = np.arange(total)[None, :] > (total - seq + np.arange(seq))[:, None]
        scores = np.where(future, -np.inf, scores)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights = scores / scores.sum(axis=-1, keepdims=True)
        attended = (weights @ value[:, :, None]).reshape(batch, c.num_heads, seq, c.head_dim)
        merged = attended.transpose(0, 2, 1, 3).reshape(batch, seq, c.num_heads * c.head_dim)
        return merged @ w["o_proj"], key, value

    @staticmethod
    def _mlp(x: np.ndarray, w: Mapping[str, np.ndarray]) -> np.ndarray:
        """SwiGLU: down(silu(gate(x)) * up(x)), silu(g) = g * sigmoid(g), the sigmoid written
        with tanh so that large negative g cannot overflow exp."""
        gate = x @ w["gate_proj"]
        sigmoid = 0.5 * (1.0 + np.tanh(0.5 * gate))
        return (gate * sigmoid * (x @ w["up_proj"])) @ w["down_proj"]
