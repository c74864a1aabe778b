"""A Llama-architecture decoder as data: the architecture record and the weight names that the
GGUF reader produces and the ONNX builder and the numpy reference consume.

Weights are float32 numpy arrays laid out for `x @ W` (inputs first: [in, out]), with the query
and key projections' columns in the rotate-half order (each head's first half of dimensions
pairs with its second half, as Hugging Face's Llama does); a reader whose file stores another
rotary layout (llama.cpp's GGUF interleaves the pairs) converts to this one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderConfig:
    """The architecture of a Llama-style decoder: RMSNorm, rotary position embedding,
    grouped-query attention with a causal mask, SwiGLU MLP."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    rope_theta: float
    rms_norm_eps: float
    context_length: int
    tie_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_group(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads


def layer_weight(layer: int, name: str) -> str:
    """The name of layer `layer`'s weight `name` (one of LAYER_WEIGHTS)."""
    return f"layers.{layer}.{name}"


# Per layer, in the order weight_shapes lists them.
LAYER_WEIGHTS = (
    "input_norm",
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "post_attention_norm",
    "gate_proj",
    "up_proj",
    "down_proj",
)
# Model-level: the embedding table, the final norm, and the output projection (absent when
# tied: the output projection is then embed_tokens transposed).
EMBED_TOKENS = "embed_tokens"
FINAL_NORM = "norm"
LM_HEAD = "lm_head"


def weight_shapes(config: DecoderConfig) -> dict[str, tuple[int, ...]]:
    """Every weight of the decoder `config` describes, by name, with its shape ([in, out] for
    projections): the one table the GGUF reader checks a file against, the ONNX builder checks
    its weights against, and seeded builds draw from."""
    h, d, i = config.hidden_size, config.head_dim, config.intermediate_size
    per_layer = {
        "input_norm": (h,),
        "q_proj": (h, config.num_heads * d),
        "k_proj": (h, config.num_kv_heads * d),
        "v_proj": (h, config.num_kv_heads * d),
        "o_proj": (config.num_heads * d, h),
        "post_attention_norm": (h,),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }
    assert tuple(per_layer) == LAYER_WEIGHTS, "weight_shapes is out of date with LAYER_WEIGHTS"
    shapes = {EMBED_TOKENS: (config.vocab_size, h), FINAL_NORM: (h,)}
    for layer in range(config.num_layers):
        shapes.update({layer_weight(layer, name): shape for name, shape in per_layer.items()})
    if not config.tie_embeddings:
        shapes[LM_HEAD] = (h, config.vocab_size)
    return shapes
