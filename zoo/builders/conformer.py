"""Conformer speech encoder (Gulati et al. 2020), as torch exports it.

Filterbank frames are subsampled 4x by two 3x3 stride-2 Conv2d + ReLU (padding 1, so 256 frames
give 64), flattened per frame and projected to `hidden`. A sinusoidal absolute position table is
added there, in place of the paper's relative position encoding, so attention is the shared
GraphBuilder one (with an all-zero mask: every frame is valid). Each block is the macaron
sandwich: half-step Swish FFN, self-attention, convolution module (pointwise Conv1d -> GLU ->
depthwise Conv1d -> BatchNorm -> Swish -> pointwise Conv1d), half-step FFN, each pre-LayerNorm
with a residual, then the block's closing LayerNorm; the last block's gives `encoded`.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from zoo.builders.graph_builder import GraphBuilder


def _conv(b: GraphBuilder, value: str, shape: tuple[int, ...], **attributes: object) -> str:
    """Conv with a seeded [out, in / group, *kernel] weight and bias, scaled by 1/sqrt(fan in)."""
    fan_in = math.prod(shape[1:])
    weight = b.weight("weight", shape, scale=1 / math.sqrt(fan_in))
    bias = b.weight("bias", (shape[0],), scale=0.01)
    return b.op("Conv", [value, weight, bias], kernel_shape=list(shape[2:]), **attributes)


def _swish(b: GraphBuilder, value: str) -> str:
    """nn.SiLU exports as x * Sigmoid(x)."""
    return b.op("Mul", [value, b.op("Sigmoid", [value])])


def _half_step_ffn(b: GraphBuilder, state: str, hidden: int, ff: int) -> str:
    expanded = _swish(b, b.linear(b.layer_norm(state, hidden), hidden, ff))
    halved = b.op("Mul", [b.linear(expanded, ff, hidden), b.const("half", np.float32(0.5))])
    return b.op("Add", [state, halved])


def _conv_module(b: GraphBuilder, state: str, hidden: int, kernel: int) -> str:
    channels_first = b.op("Transpose", [b.layer_norm(state, hidden)], perm=[0, 2, 1])
    doubled = _conv(b, channels_first, (2 * hidden, hidden, 1))
    content, gate = b.name("glu_content"), b.name("glu_gate")
    split = b.const("split", np.array([hidden, hidden]))
    b.nodes.append(
        helper.make_node("Split", [doubled, split], [content, gate], name=b.name("split"), axis=1)
    )
    gated = b.op("Mul", [content, b.op("Sigmoid", [gate])])
    pad = (kernel - 1) // 2
    depthwise = _conv(b, gated, (hidden, 1, kernel), group=hidden, pads=[pad, pad])
    norm_stats = [
        (1.0 + b.rng.standard_normal(hidden) * 0.1).astype(np.float32),  # scale
        (b.rng.standard_normal(hidden) * 0.1).astype(np.float32),  # bias
        (b.rng.standard_normal(hidden) * 0.1).astype(np.float32),  # running mean
        b.rng.uniform(0.5, 1.5, hidden).astype(np.float32),  # running variance
    ]
    normalized = b.op(
        "BatchNormalization",
        [depthwise, *(b.parameter("batch_norm", stat) for stat in norm_stats)],
        epsilon=1e-5,
        momentum=0.9,
    )
    projected = _conv(b, _swish(b, normalized), (hidden, hidden, 1))
    return b.op("Add", [state, b.op("Transpose", [projected], perm=[0, 2, 1])])


def _positional_table(length: int, hidden: int) -> np.ndarray:
    """The sinusoidal table [1, length, hidden]: sin on even channels, cos on odd."""
    position = np.arange(length)[:, None]
    frequency = np.exp(np.arange(0, hidden, 2) * (-math.log(10000.0) / hidden))
    table = np.zeros((length, hidden))
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency)
    return table[None].astype(np.float32)


def build_conformer(
    *,
    batch: int | str = "batch",
    frames: int = 256,
    features: int = 80,
    hidden: int = 256,
    layers: int = 12,
    heads: int = 4,
    kernel: int = 31,
    ff: int = 1024,
    seed: int = 0,
    opset: int = 17,
) -> onnx.ModelProto:
    """Input `features` (float [batch, frames, features]); output `encoded` (float [batch,
    frames / 4, hidden], rounded up). `kernel` is the depthwise convolution's, and odd."""
    if opset < 13:
        raise ValueError("conformer is written for opset >= 13 (Split sizes as an input)")
    b = GraphBuilder(opset, seed)
    image = b.unsqueeze("features", [1])
    for channels_in in (1, hidden):
        image = b.op(
            "Relu", [_conv(b, image, (hidden, channels_in, 3, 3), strides=[2, 2], pads=[1] * 4)]
        )
    steps, bins = frames, features
    for _ in range(2):
        steps, bins = (steps + 1) // 2, (bins + 1) // 2
    per_frame = b.op("Transpose", [image], perm=[0, 2, 1, 3])
    flat_shape = b.op(
        "Concat",
        [b.dim(per_frame, 0), b.dim(per_frame, 1), b.const("width", np.array([hidden * bins]))],
        axis=0,
    )
    projected = b.linear(b.op("Reshape", [per_frame, flat_shape]), hidden * bins, hidden)
    state = b.op(
        "Add", [projected, b.const("positional_encoding", _positional_table(steps, hidden))]
    )
    mask = b.const("zero_mask", np.float32(0.0))
    for _ in range(layers):
        state = _half_step_ffn(b, state, hidden, ff)
        state = b.op("Add", [state, b.attention(b.layer_norm(state, hidden), mask, hidden, heads)])
        state = _conv_module(b, state, hidden, kernel)
        state = b.layer_norm(_half_step_ffn(b, state, hidden, ff), hidden)
    b.nodes[-1].output[0] = "encoded"
    return b.model(
        "conformer",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, frames, features])],
        [helper.make_tensor_value_info("encoded", TensorProto.FLOAT, [batch, steps, hidden])],
    )
