"""Low-precision floats (bfloat16, float16): rounding, and an FP32 emulation of a mixed model.

onnxruntime's CPU build has no bfloat16 MatMul, Gemm or Conv kernels (checked with 1.32), so a
model from mixed-precision cannot be run there as written. `emulate_low_precision` rewrites it
into an FP32 model that rounds exactly where the mixed model does: every low-precision tensor
holds FP32 values rounded to that type, so its drift can still be measured. The rounding is
onnxruntime's own Cast float -> bfloat16 -> float, which is round-to-nearest-even and matched
ml_dtypes bit for bit on 2 million random float32 patterns (ties, subnormals and infinities
included). Ops then run in FP32 on rounded inputs, i.e. with FP32 accumulation, and round their
outputs: what a bfloat16 dot-product unit that accumulates in FP32 (AVX-512 BF16) computes, up
to the order of the sums.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx_ir as oir

from ir.errors import AsicperfError
from ir.model_io import copy_model
from ir.names import unique_name
from ir.node_ids import assign_node_ids

# ONNX low-precision float types and the numpy types that round to them.
LOW_PRECISION: dict[oir.DataType, type] = {
    oir.DataType.BFLOAT16: ml_dtypes.bfloat16,
    oir.DataType.FLOAT16: np.float16,
}

# Metadata key of an emulated copy: the low-precision types it emulates ("bfloat16").
EMULATED_KEY = "asicperf.emulated_precision"


def round_to(array: np.ndarray, dtype: oir.DataType) -> np.ndarray:
    """`array` rounded to the low-precision `dtype`, round-to-nearest-even, in that type;
    values beyond its range become infinities (float16 overflows above 65504)."""
    with np.errstate(over="ignore"):
        return np.asarray(array, dtype=np.float32).astype(LOW_PRECISION[dtype])


def needs_emulation(model: oir.Model) -> bool:
    """Whether onnxruntime's CPU build cannot run `model` as written for want of bfloat16
    kernels: a node of the main graph other than Cast computes bfloat16 (1.32 has none for
    MatMul, Gemm, Conv, Add, Relu or Softmax; Cast float <-> bfloat16 it runs)."""
    return any(
        value.dtype == oir.DataType.BFLOAT16
        for node in model.graph
        if not (node.op_type == "Cast" and node.domain == "")
        for value in node.outputs
    )


def runnable_on_cpu(model: oir.Model) -> oir.Model:
    """`model` as onnxruntime's CPU build can run it: `model` itself, or its FP32 emulation
    when `needs_emulation` says it has bfloat16 nodes. The one way the reference path (the
    pass audit's numeric check, the `reference` target) runs a mixed-precision model."""
    return emulate_low_precision(model) if needs_emulation(model) else model


def emulate_low_precision(model: oir.Model) -> oir.Model:
    """An FP32 copy of `model` that rounds every low-precision tensor to its type in place of
    holding it in that type; `model` itself is left alone. Graph inputs and outputs must not be
    low precision (mixed-precision keeps them FP32). The copy names the emulated types in its
    metadata (EMULATED_KEY), so whoever runs it can say what ran."""
    copy = copy_model(model)
    graph = copy.graph
    emulated = sorted(
        {
            value.dtype.name.lower()
            for value in [*graph.initializers.values(), *(o for n in graph for o in n.outputs)]
            if value.dtype in LOW_PRECISION
        }
    )
    for value in [*graph.inputs, *graph.outputs]:
        if value.dtype in LOW_PRECISION:
            raise AsicperfError(
                f"cannot emulate graph {'input' if value.is_graph_input() else 'output'} "
                f"'{value.name}' of type {value.dtype.name}: graph inputs and outputs must be FP32"
            )
    for value in graph.initializers.values():
        if value.dtype in LOW_PRECISION and value.const_value is not None:
            widened = value.const_value.numpy().astype(np.float32)
            value.const_value = oir.tensor(widened, name=value.name)
            value.dtype = oir.DataType.FLOAT
    for node in list(graph):
        for value in node.outputs:
            if value.dtype in LOW_PRECISION:
                _round_in_fp32(graph, node, value)
    if emulated:
        copy.metadata_props[EMULATED_KEY] = ",".join(emulated)
        assign_node_ids(copy)  # the Casts it inserted, for whoever partitions the copy
    return copy


def _round_in_fp32(graph: oir.Graph, node: oir.Node, value: oir.Value) -> None:
    """Make `value`'s readers read it as FP32 rounded to its low-precision type. A Cast to that
    type already rounds and only needs widening; any other node computes in FP32 and rounds."""
    dtype = value.dtype
    readers = list(value.uses())
    anchor, rounded = node, value
    if not (node.op_type == "Cast" and node.domain == ""):
        value.dtype = oir.DataType.FLOAT
        anchor = _insert_cast(graph, anchor, value, dtype, f"{value.name}_{dtype.name.lower()}")
        rounded = anchor.outputs[0]
    widen = _insert_cast(graph, anchor, rounded, oir.DataType.FLOAT, f"{value.name}_rounded")
    for user, index in readers:
        user.replace_input_with(index, widen.outputs[0])


def _insert_cast(
    graph: oir.Graph, after: oir.Node, value: oir.Value, dtype: oir.DataType, base: str
) -> oir.Node:
    """A Cast of `value` to `dtype` placed right after `after`, its output named after `base`."""
    cast = oir.node("Cast", [value], {"to": int(dtype)})
    output = cast.outputs[0]
    output.name, output.dtype, output.shape = unique_name(graph, base), dtype, value.shape
    graph.insert_after(after, cast)
    return cast
