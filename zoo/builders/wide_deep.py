"""Wide&Deep click-through-rate model (Criteo layout), as torch exports it.

Inputs are 13 dense features and 26 categorical ids per row. Every field's table lives in one
shared embedding table, field f owning rows [f * vocab, (f + 1) * vocab): torch recommenders
store it that way so one Gather serves all fields. The wide part sums a per-id weight (a
[rows, 1] table) over the fields plus a linear map of the dense features; the deep part feeds
the flattened field embeddings concatenated with the dense features through a ReLU MLP to one
logit. Wide + deep logits -> Sigmoid gives the click probability.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from zoo.builders.graph_builder import GraphBuilder


def _gemm(b: GraphBuilder, value: str, fan_in: int, fan_out: int) -> str:
    """nn.Linear on a 2-D batch: torch exports Gemm with the weight kept [out, in]."""
    weight = b.weight("weight", (fan_out, fan_in), scale=1 / math.sqrt(fan_in))
    return b.op("Gemm", [value, weight, b.weight("bias", (fan_out,), scale=0.01)], transB=1)


def build_wide_deep(
    *,
    batch: int | str = "batch",
    dense_features: int = 13,
    sparse_features: int = 26,
    vocab: int = 100_000,
    embedding: int = 16,
    hidden: tuple[int, ...] = (1024, 512, 256),
    seed: int = 0,
    opset: int = 17,
) -> onnx.ModelProto:
    """Inputs `dense` (float [batch, dense_features]) and `sparse` (int64 [batch,
    sparse_features], ids < vocab); output `probability` (float [batch, 1])."""
    if opset < 13:
        raise ValueError("wide-deep is written for opset >= 13 (ReduceSum axes as an input)")
    b = GraphBuilder(opset, seed)
    rows = sparse_features * vocab
    offsets = b.const("field_offsets", np.arange(sparse_features, dtype=np.int64) * vocab)
    ids = b.op("Add", ["sparse", offsets])

    per_id = b.op("Gather", [b.weight("wide_embedding", (rows, 1), scale=0.01), ids])
    summed = b.op("ReduceSum", [per_id, b.const("axes", np.array([1]))], keepdims=0)
    wide = b.op("Add", [summed, _gemm(b, "dense", dense_features, 1)])

    embedded = b.op("Gather", [b.weight("deep_embedding", (rows, embedding), scale=0.05), ids])
    flat_shape = b.op("Concat", [b.dim(embedded, 0), b.const("rest", np.array([-1]))], axis=0)
    flat = b.op("Reshape", [embedded, flat_shape])
    state = b.op("Concat", [flat, "dense"], axis=1)
    width = sparse_features * embedding + dense_features
    for size in hidden:
        state = b.op("Relu", [_gemm(b, state, width, size)])
        width = size
    deep = _gemm(b, state, width, 1)

    b.op("Sigmoid", [b.op("Add", [wide, deep])])
    b.nodes[-1].output[0] = "probability"
    return b.model(
        "wide_deep",
        [
            helper.make_tensor_value_info("dense", TensorProto.FLOAT, [batch, dense_features]),
            helper.make_tensor_value_info("sparse", TensorProto.INT64, [batch, sparse_features]),
        ],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [batch, 1])],
    )
