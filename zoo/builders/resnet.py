"""ResNet-50 v1.5 (torchvision's), as torch exports it in eval mode without folding.

Stem: 7x7/2 Conv, BatchNormalization, Relu, 3x3/2 MaxPool. Four stages of bottlenecks (1x1
reduce, 3x3 carrying the stride as in v1.5, 1x1 expand x4), each closed by a residual Add and
Relu, with a 1x1 strided Conv + BatchNormalization projection where the shape changes. Head:
GlobalAveragePool, Flatten, Gemm. Conv weights are He-initialized and BN running statistics are
(mean 0, var 1), so activations keep a sensible scale through all 50 layers.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from zoo.builders.graph_builder import GraphBuilder

_BRANCH_GAMMA = 0.2


def _conv_bn(
    b: GraphBuilder,
    value: str,
    channels: tuple[int, int],
    kernel: int,
    stride: int,
    relu: bool,
    gamma: float = 1.0,
) -> str:
    """Conv (no bias) + BatchNormalization (+ Relu): torchvision's conv/bn pairs. `gamma` is the
    BN scale's mean."""
    fan_in, fan_out = channels[0] * kernel * kernel, channels[1]
    weight = b.weight("conv_weight", (fan_out, channels[0], kernel, kernel), math.sqrt(2 / fan_in))
    conv = b.op(
        "Conv",
        [value, weight],
        kernel_shape=[kernel, kernel],
        strides=[stride, stride],
        pads=[kernel // 2] * 4,
        dilations=[1, 1],
        group=1,
    )
    noise = b.rng.standard_normal(fan_out) * 0.1
    scale = b.parameter("bn_weight", (gamma * (1.0 + noise)).astype(np.float32))
    beta = b.weight("bn_bias", (fan_out,), 0.01)
    mean = b.const("bn_running_mean", np.zeros(fan_out, np.float32))
    var = b.const("bn_running_var", np.ones(fan_out, np.float32))
    normed = b.op("BatchNormalization", [conv, scale, beta, mean, var], epsilon=1e-5, momentum=0.9)
    return b.op("Relu", [normed]) if relu else normed


def _bottleneck(b: GraphBuilder, value: str, inputs: int, planes: int, stride: int) -> str:
    """1x1 reduce, 3x3 (strided), 1x1 expand, plus the (projected) identity, then Relu."""
    outputs = planes * 4
    branch = _conv_bn(b, value, (inputs, planes), 1, 1, relu=True)
    branch = _conv_bn(b, branch, (planes, planes), 3, stride, relu=True)
    # Trained ResNets end each branch with a small BN scale; so does this one, which keeps the
    # residual sum from growing through 16 blocks.
    branch = _conv_bn(b, branch, (planes, outputs), 1, 1, relu=False, gamma=_BRANCH_GAMMA)
    identity = value
    if stride != 1 or inputs != outputs:
        identity = _conv_bn(b, value, (inputs, outputs), 1, stride, relu=False)
    return b.op("Relu", [b.op("Add", [branch, identity])])


def build_resnet50(
    *,
    batch: int | str = "batch",
    image: int = 224,
    classes: int = 1000,
    width: int = 64,
    blocks: tuple[int, ...] = (3, 4, 6, 3),
    opset: int = 17,
    seed: int = 0,
) -> onnx.ModelProto:
    """Input `pixel_values` (float [batch, 3, image, image]); output `logits` ([batch,
    classes]). `width` is the stem's channel count; `blocks` the bottlenecks per stage."""
    b = GraphBuilder(opset, seed)
    state = _conv_bn(b, "pixel_values", (3, width), 7, 2, relu=True)
    state = b.op("MaxPool", [state], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    channels = width
    for stage, count in enumerate(blocks):
        planes = width * 2**stage
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            state = _bottleneck(b, state, channels, planes, stride)
            channels = planes * 4
    flat = b.op("Flatten", [b.op("GlobalAveragePool", [state])], axis=1)
    b.classifier_head(flat, channels, classes, stem="fc")
    return b.image_classifier("resnet50", batch, image, classes)
