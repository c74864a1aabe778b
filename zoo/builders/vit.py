"""ViT-B/16 (torchvision's vit_b_16), as torch exports it.

Patch embedding is a Conv with kernel = stride = patch, reshaped and transposed to tokens
[batch, patches, hidden]; a learned CLS token, expanded to the batch through a Shape chain, is
prepended and learned position embeddings are added. Then pre-norm encoder blocks (LayerNorm,
unmasked multi-head self-attention, residual; LayerNorm, erf-GELU MLP, residual), a final
LayerNorm, the CLS token picked by Gather, and a Gemm head.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from zoo.builders.graph_builder import GraphBuilder


def build_vit(
    *,
    batch: int | str = "batch",
    image: int = 224,
    patch: int = 16,
    hidden: int = 768,
    layers: int = 12,
    heads: int = 12,
    mlp: int = 3072,
    classes: int = 1000,
    opset: int = 17,
    seed: int = 0,
) -> onnx.ModelProto:
    """Input `pixel_values` (float [batch, 3, image, image]); output `logits` ([batch,
    classes])."""
    b = GraphBuilder(opset, seed)
    fan_in = 3 * patch * patch
    embed_weight = b.weight("conv_proj_weight", (hidden, 3, patch, patch), math.sqrt(1 / fan_in))
    embed_bias = b.weight("conv_proj_bias", (hidden,), 0.02)
    patches = b.op(
        "Conv",
        ["pixel_values", embed_weight, embed_bias],
        kernel_shape=[patch, patch],
        strides=[patch, patch],
        pads=[0, 0, 0, 0],
        dilations=[1, 1],
        group=1,
    )
    flat_shape = b.op(
        "Concat",
        [b.dim(patches, 0), b.const("hidden", np.array([hidden])), b.const("rest", np.array([-1]))],
        axis=0,
    )
    tokens = b.op("Transpose", [b.op("Reshape", [patches, flat_shape])], perm=[0, 2, 1])
    cls_shape = b.op(
        "Concat",
        [b.dim(tokens, 0), b.const("one", np.array([1])), b.const("hidden", np.array([hidden]))],
        axis=0,
    )
    cls = b.op("Expand", [b.weight("class_token", (1, 1, hidden), 0.02), cls_shape])
    state = b.op("Concat", [cls, tokens], axis=1)
    positions = (image // patch) ** 2 + 1
    state = b.op("Add", [state, b.weight("pos_embedding", (1, positions, hidden), 0.02)])
    for _ in range(layers):
        attended = b.attention(b.layer_norm(state, hidden), None, hidden, heads)
        state = b.op("Add", [attended, state])
        expanded = b.gelu(b.linear(b.layer_norm(state, hidden), hidden, mlp), "erf")
        state = b.op("Add", [b.linear(expanded, mlp, hidden), state])
    state = b.layer_norm(state, hidden)
    cls_out = b.op("Gather", [state, b.const("index", np.array(0))], axis=1)
    b.classifier_head(cls_out, hidden, classes, stem="head")
    return b.image_classifier("vit", batch, image, classes)
