"""Building ONNX graphs the way exporters write them, with seeded weights.

The zoo builds real architectures locally, with no download: weights come from a seeded
generator, so the same builder, version and options give the same bytes. Layers are written as
torch's exporter writes them (Shape/Gather/Concat chains for reshapes, decomposed LayerNorm and
GELU), so the passes and targets see what they would see in a real exported model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Collects nodes and seeded initializers under unique names, emitting ops the way torch
    exports them at the chosen opset (shape chains, decomposed LayerNorm and GELU)."""

    def __init__(self, opset: int, seed: int, weights: Iterable[np.ndarray] | None = None) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        # Trained weights, if given, replace the seeded ones in the order parameters are made.
        self._given = iter(weights) if weights is not None else None
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0
        self._recorded: list[tuple[str, tuple[int, ...]]] | None = None
        self._recording = False
        self._replay: Iterator[tuple[str, tuple[int, ...]]] | None = None

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, array: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def parameter(self, stem: str, array: np.ndarray) -> str:
        """A trained parameter: shared across layers inside `shared_layers`, else new."""
        if self._replay is not None:
            name, shape = next(self._replay)
            assert shape == array.shape, f"shared layer asks for {array.shape}, recorded {shape}"
            return name
        if self._given is not None:
            given = np.asarray(next(self._given), np.float32)
            assert given.shape == array.shape, f"{stem} is {array.shape}, given {given.shape}"
            array = given
        name = self.const(stem, array)
        if self._recording:
            assert self._recorded is not None
            self._recorded.append((name, array.shape))
        return name

    def weight(self, stem: str, shape: tuple[int, ...], scale: float = 0.1) -> str:
        return self.parameter(stem, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    @contextlib.contextmanager
    def shared_layer(self) -> Iterator[None]:
        """The parameters the first such block creates are reused, in order, by later ones
        (ALBERT shares every layer's parameters)."""
        if self._recorded is None:
            self._recorded, self._recording = [], True
        else:
            self._replay = iter(self._recorded)
        try:
            yield
        finally:
            self._recording, self._replay = False, None

    def model(
        self,
        name: str,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            ir_version=8,
            producer_name="asicperf.zoo",
        )

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
        gamma = self.parameter("gamma", (1.0 + self.rng.standard_normal(size) * 0.1).astype("f4"))
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

    def attention(self, value: str, mask: str | None, hidden: int, heads: int) -> str:
        """Multi-head self-attention; `mask` (added to the scores) is None for unmasked ViTs."""
        head_size = hidden // heads
        query = self.split_heads(self.linear(value, hidden, hidden), heads, head_size)
        key = self.split_heads(self.linear(value, hidden, hidden), heads, head_size)
        value_heads = self.split_heads(self.linear(value, hidden, hidden), heads, head_size)
        key_t = self.op("Transpose", [key], perm=[0, 1, 3, 2])
        scores = self.op("MatMul", [query, key_t])
        root = np.array(math.sqrt(head_size), np.float32)
        scores = self.op("Div", [scores, self.const("sqrt_head", root)])
        if mask is not None:
            scores = self.op("Add", [scores, mask])
        axis = -1 if self.opset >= 13 else 3
        probs = self.op("Softmax", [scores], axis=axis)
        context = self.merge_heads(self.op("MatMul", [probs, value_heads]), hidden)
        return self.linear(context, hidden, hidden)

    def classifier_head(self, features: str, width: int, classes: int, stem: str) -> None:
        """torch's nn.Linear head as exported (Gemm, transB=1), writing `logits`."""
        scale = 1 / math.sqrt(width)
        weight = self.weight(f"{stem}_weight", (classes, width), scale)
        bias = self.weight(f"{stem}_bias", (classes,), scale)
        self.op("Gemm", [features, weight, bias], alpha=1.0, beta=1.0, transB=1)
        self.nodes[-1].output[0] = "logits"

    def image_classifier(
        self, name: str, batch: int | str, image: int, classes: int
    ) -> onnx.ModelProto:
        """The model of an ImageNet-style classifier: `pixel_values` in, `logits` out."""
        return self.model(
            name,
            [
                helper.make_tensor_value_info(
                    "pixel_values", TensorProto.FLOAT, [batch, 3, image, image]
                )
            ],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        )
