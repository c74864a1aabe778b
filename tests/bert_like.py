"""A small BERT-style encoder built the way torch exports one, for the fusion-pass tests.

Embeddings (word + position Gather), then per layer: Q/K/V MatMul + Add, head split
(Reshape to [batch, seq, heads, head] with a Shape/Gather/Unsqueeze/Concat shape, Transpose),
scores MatMul with K transposed, Div by sqrt(head), Add of the extended mask
(1 - mask) * -10000, Softmax, MatMul with V, head merge, output projection, residual,
decomposed LayerNorm (ReduceMean/Sub/Pow/.../Div/Mul/Add) and a decomposed-GELU FFN. Counts:
`layers` attention blocks and GELUs, 2 * layers + 1 LayerNorms. Weights come from a seed.

Also the small helpers the fusion tests share: a graph from nodes and constants, loading it the
way the toolkit loads a file, and the numeric comparison of outputs before and after a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from ir.drift import output_drift
from ir.model_io import load_model
from ir.reference import run_reference
from zoo.synthetic_inputs import seeded_inputs


class _Builder:
    """Collects nodes and initializers under unique names."""

    def __init__(self, opset: int, seed: int) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, array: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, stem: str, shape: tuple[int, ...], scale: float = 0.1) -> str:
        return self.const(stem, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], **attributes: object) -> str:
        output = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def unsqueeze(self, value: str, axes: list[int]) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", [value, self.const("axes", np.array(axes))])
        return self.op("Unsqueeze", [value], axes=axes)

    def reduce_mean(self, value: str) -> str:
        if self.opset >= 18:
            return self.op("ReduceMean", [value, self.const("axes", np.array([-1]))])
        return self.op("ReduceMean", [value], axes=[-1])

    def dim(self, value: str, index: int) -> str:
        """Shape(value)[index] as a 1-D tensor, as torch exports `x.size(index)`."""
        shape = self.op("Shape", [value])
        picked = self.op("Gather", [shape, self.const("index", np.array(index))], axis=0)
        return self.unsqueeze(picked, [0])

    def linear(self, value: str, fan_in: int, fan_out: int) -> str:
        product = self.op("MatMul", [value, self.weight("weight", (fan_in, fan_out))])
        return self.op("Add", [product, self.weight("bias", (fan_out,))])

    def layer_norm(self, value: str, size: int) -> str:
        mean = self.reduce_mean(value)
        centered = self.op("Sub", [value, mean])
        square = self.op("Pow", [centered, self.const("two", np.array(2.0, np.float32))])
        variance = self.reduce_mean(square)
        shifted = self.op("Add", [variance, self.const("eps", np.array(1e-12, np.float32))])
        normalized = self.op("Div", [centered, self.op("Sqrt", [shifted])])
        gamma = self.const("gamma", (1.0 + self.rng.standard_normal(size) * 0.1).astype("f4"))
        scaled = self.op("Mul", [normalized, gamma])
        return self.op("Add", [scaled, self.weight("beta", (size,))])

    def gelu(self, value: str, form: str) -> str:
        half = np.array(0.5, np.float32)
        one = np.array(1.0, np.float32)
        if form == "erf":  # torch: x * 0.5 * (1 + erf(x / sqrt(2))), grouped (x * s) * 0.5
            scaled = self.op("Div", [value, self.const("sqrt2", np.array(math.sqrt(2), "f4"))])
            shifted = self.op("Add", [self.op("Erf", [scaled]), self.const("one", one)])
            product = self.op("Mul", [value, shifted])
            return self.op("Mul", [product, self.const("half", half)])
        cube = self.op("Pow", [value, self.const("three", np.array(3.0, np.float32))])
        cubic = self.op("Mul", [self.const("c", np.array(0.044715, np.float32)), cube])
        inner = self.op("Add", [value, cubic])
        scale = np.array(math.sqrt(2 / math.pi), np.float32)
        tanh = self.op("Tanh", [self.op("Mul", [self.const("k", scale), inner])])
        shifted = self.op("Add", [self.const("one", one), tanh])
        return self.op("Mul", [self.op("Mul", [self.const("half", half), value]), shifted])

    def split_heads(self, value: str, heads: int, head_size: int) -> str:
        shape = self.op(
            "Concat",
            [
                self.dim(value, 0),
                self.dim(value, 1),
                self.const("heads", np.array([heads])),
                self.const("head_size", np.array([head_size])),
            ],
            axis=0,
        )
        return self.op("Transpose", [self.op("Reshape", [value, shape])], perm=[0, 2, 1, 3])

    def merge_heads(self, value: str, hidden: int) -> str:
        merged = self.op("Transpose", [value], perm=[0, 2, 1, 3])
        hidden_dim = self.const("hidden", np.array([hidden]))
        shape = self.op("Concat", [self.dim(merged, 0), self.dim(merged, 1), hidden_dim], axis=0)
        return self.op("Reshape", [merged, shape])

    def attention(self, value: str, mask: str, hidden: int, heads: int) -> str:
        head_size = hidden // heads
        query = self.split_heads(self.linear(value, hidden, hidden), heads, head_size)
        key = self.split_heads(self.linear(value, hidden, hidden), heads, head_size)
        value_heads = self.split_heads(self.linear(value, hidden, hidden), heads, head_size)
        key_t = self.op("Transpose", [key], perm=[0, 1, 3, 2])
        scores = self.op("MatMul", [query, key_t])
        root = np.array(math.sqrt(head_size), np.float32)
        scores = self.op("Div", [scores, self.const("sqrt_head", root)])
        scores = self.op("Add", [scores, mask])
        axis = -1 if self.opset >= 13 else 3
        probs = self.op("Softmax", [scores], axis=axis)
        context = self.merge_heads(self.op("MatMul", [probs, value_heads]), hidden)
        return self.linear(context, hidden, hidden)


def build_bert_like(
    opset: int = 14,
    layers: int = 2,
    *,
    hidden: int = 64,
    heads: int = 4,
    seq: int | str = 16,
    batch: int | str = "batch",
    vocab: int = 32,
    gelu: str = "erf",
    seed: int = 0,
) -> onnx.ModelProto:
    """The encoder: inputs `input_ids` and `attention_mask` (int64 [batch, seq], mask 1 = keep),
    output `last_hidden_state` (float [batch, seq, hidden]); `gelu` is "erf" or "tanh"."""
    b = _Builder(opset, seed)
    max_positions = seq if isinstance(seq, int) else 64
    words = b.op("Gather", [b.weight("word_embeddings", (vocab, hidden)), "input_ids"])
    positions = b.op(
        "Slice",
        [
            b.const("position_ids", np.arange(max_positions)[None, :]),
            b.const("start", np.array([0])),
            b.dim("input_ids", 1),
            b.const("axis", np.array([1])),
        ],
    )
    placed = b.op("Gather", [b.weight("position_embeddings", (max_positions, hidden)), positions])
    hidden_state = b.layer_norm(b.op("Add", [words, placed]), hidden)
    keep = b.op("Cast", [b.unsqueeze(b.unsqueeze("attention_mask", [1]), [2])], to=1)
    inverted = b.op("Sub", [b.const("one", np.array(1.0, np.float32)), keep])
    mask = b.op("Mul", [inverted, b.const("min", np.array(-10000.0, np.float32))])
    for _ in range(layers):
        attended = b.attention(hidden_state, mask, hidden, heads)
        hidden_state = b.layer_norm(b.op("Add", [attended, hidden_state]), hidden)
        inner = b.gelu(b.linear(hidden_state, hidden, 4 * hidden), gelu)
        hidden_state = b.layer_norm(
            b.op("Add", [b.linear(inner, 4 * hidden, hidden), hidden_state]), hidden
        )
    b.nodes[-1].output[0] = "last_hidden_state"
    graph = helper.make_graph(
        b.nodes,
        "bert_like",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, seq]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, seq]),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, [batch, seq, hidden]
            )
        ],
        b.initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def bert_like_feeds(
    batch: int = 2, seq: int = 16, vocab: int = 32, seed: int = 0
) -> dict[str, np.ndarray]:
    """Token ids in range and a 0/1 mask that keeps at least the first token of every row."""
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, 2, size=(batch, seq))
    mask[:, 0] = 1
    return {"input_ids": rng.integers(0, vocab, size=(batch, seq)), "attention_mask": mask}


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, Sequence[int | str]],
    outputs: Sequence[str],
    constants: Mapping[str, np.ndarray] | None = None,
    opset: int = 14,
    elem_type: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    """A model with graph inputs by name and shape and outputs by name, all of `elem_type`, and
    constants as initializers."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(n, elem_type, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(name, elem_type, None) for name in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in (constants or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def load(proto: onnx.ModelProto, folder: Path) -> ir.Model:
    """`proto` saved in `folder` and loaded as any file is: inferred shapes, stable ids."""
    path = folder / "model.onnx"
    onnx.save(proto, path)
    return load_model(path)


def outputs_of(model: ir.Model, feeds: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """The model's outputs on `feeds` (default: seeded random inputs) with the reference path."""
    return run_reference(model, feeds if feeds is not None else seeded_inputs(model))


def assert_close(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray]) -> None:
    """Same outputs within fusion tolerance: cosine >= 0.99999 and rtol 1e-4 (atol 1e-5)."""
    assert len(expected) == len(actual)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert output_drift(index, want, got).cosine >= 0.99999
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
