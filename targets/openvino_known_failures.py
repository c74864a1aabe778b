"""Where OpenVINO 2026.4 (ONNX frontend, CPU plugin) converts a node and then computes
something other than ONNX's answer: found by ONNX's node tests at precision=f32
(docs/conformance.md). `Core.query_model` says such nodes run, so the target asks this table
too, and a matching node falls back to the reference path instead of giving wrong numbers.

Each rule is as narrow as the node allows: a failure that depends on the values alone (ties in
TopK, a box exactly at NonMaxSuppression's threshold) withdraws every node that can meet them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from targets.api import dtype_name, is_floating
from targets.known_failures import FailureRule, always, attribute

if TYPE_CHECKING:  # the table is read by `OpenVinoTarget`, which imports cheaply
    import numpy as np
    import onnx_ir as oir


def _dtype(value: oir.Value | None) -> str | None:
    return None if value is None or value.dtype is None else dtype_name(value.dtype)


def _operand(node: oir.Node, index: int) -> oir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _constant(value: oir.Value | None) -> np.ndarray | None:
    from passes.rewrite import constant_array

    return constant_array(value)


def _signed_input(node: oir.Node) -> bool:
    return (_dtype(node.inputs[0]) or "").startswith("int")


def _reads_graph_input(node: oir.Node) -> bool:
    return node.inputs[0] is not None and node.inputs[0].is_graph_input()


def _output_is(dtype: str) -> Callable[[oir.Node], bool]:
    return lambda node: _dtype(node.outputs[0]) == dtype


def _has_input(index: int) -> Callable[[oir.Node], bool]:
    return lambda node: _operand(node, index) is not None


def _empty_float_reduction(node: oir.Node) -> bool:
    data = node.inputs[0]
    if data is None or data.shape is None or not is_floating(_dtype(data) or ""):
        return False
    return 0 in data.shape.dims


def _ceil_drops_last_window(node: oir.Node) -> bool:
    """ceil_mode where ONNX drops a last window that would start past the input (and its
    begin padding), which OpenVINO keeps: one output more along that axis."""
    if attribute(node, "ceil_mode", 0) == 0 or attribute(node, "auto_pad", "NOTSET") != "NOTSET":
        return False
    kernel = list(attribute(node, "kernel_shape", []))
    shape = node.inputs[0].shape if node.inputs[0] is not None else None
    if shape is None or len(shape) != len(kernel) + 2:
        return True
    strides = list(attribute(node, "strides", [1] * len(kernel)))
    dilations = list(attribute(node, "dilations", [1] * len(kernel)))
    pads = list(attribute(node, "pads", [0] * 2 * len(kernel)))
    for axis, size in enumerate(shape.dims[2:]):
        if not isinstance(size, int):
            return True
        begin, end = pads[axis], pads[axis + len(kernel)]
        span = size + begin + end - dilations[axis] * (kernel[axis] - 1) - 1
        outputs = math.ceil(span / strides[axis]) + 1
        if (outputs - 1) * strides[axis] >= size + begin:
            return True
    return False


def _unrounded_align_corners(node: oir.Node) -> bool:
    """align_corners from `scales` unless each input length * scale is a whole number (known
    only for constant scales on a static shape)."""
    if attribute(node, "coordinate_transformation_mode", "half_pixel") != "align_corners":
        return False
    scales = _operand(node, 2)
    if scales is None:
        return False
    factors = _constant(scales)
    shape = node.inputs[0].shape if node.inputs[0] is not None else None
    axes = attribute(node, "axes", None)
    if factors is None or shape is None or axes is not None:
        return True
    if any(not isinstance(size, int) for size in shape.dims) or len(factors) != len(shape):
        return True
    return any(
        not float(size * factor).is_integer()
        for size, factor in zip(shape.dims, factors, strict=True)
    )


def _sliding_window(node: oir.Node) -> bool:
    return (
        attribute(node, "left_window_size", -1) >= 0
        or attribute(node, "right_window_size", -1) >= 0
    )


def _causal_past_with_new_keys_not_queries(node: oir.Node) -> bool:
    """is_causal with past keys, where the new keys and the queries differ in length (or may):
    ONNX offsets the causal frontier by the past length, OpenVINO aligns it to the last key."""
    if attribute(node, "is_causal", 0) == 0 or _operand(node, 4) is None:
        return False
    query, key = node.inputs[0], node.inputs[1]
    if query is None or key is None or query.shape is None or key.shape is None:
        return True
    return not _same_length(query.shape.dims[-2], key.shape.dims[-2])


def _same_length(a: object, b: object) -> bool:
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return getattr(a, "value", None) is not None and a == b


def _runtime_repeats_on_rank_4_or_more(node: oir.Node) -> bool:
    shape = node.inputs[0].shape if node.inputs[0] is not None else None
    return _constant(_operand(node, 1)) is None and (shape is None or len(shape) >= 4)


def _indices_used(node: oir.Node) -> bool:
    indices = node.outputs[1] if len(node.outputs) > 1 else None
    return (
        indices is not None
        and bool(indices.name)
        and (bool(indices.consumers()) or indices.is_graph_output())
    )


_BATCH_FIRST = "OpenVINO's ONNX frontend ignores {}'s layout=1 (batch first)"

OPENVINO_KNOWN_FAILURES: tuple[FailureRule, ...] = (
    (
        "Attention",
        _sliding_window,
        "OpenVINO's ONNX frontend ignores Attention's left_window_size/right_window_size",
    ),
    (
        "Attention",
        _causal_past_with_new_keys_not_queries,
        "OpenVINO aligns Attention's causal mask with past keys to the last key, not past length",
    ),
    (
        "Bernoulli",
        lambda n: "seed" in n.attributes,
        "OpenVINO's Bernoulli draws other numbers than ONNX's for the same seed",
    ),
    (
        "BitShift",
        _signed_input,
        "OpenVINO's ONNX frontend shifts signed integers as a multiply or divide by 2^n",
    ),
    (
        "DFT",
        always,
        "OpenVINO's float32 DFT misses ONNX's atol where exact zeros are expected",
    ),
    (
        "Dropout",
        _reads_graph_input,
        "OpenVINO's ONNX frontend renames a graph input read by Dropout after Dropout's output",
    ),
    (
        "DynamicQuantizeLinear",
        always,
        "OpenVINO's CPU DynamicQuantizeLinear rounds x / y_scale one step off at ties",
    ),
    *(
        (op, lambda n: attribute(n, "layout", 0) == 1, _BATCH_FIRST.format(op))
        for op in ("GRU", "LSTM", "RNN")
    ),
    ("LSTM", _has_input(7), "OpenVINO's ONNX frontend drops LSTM's peephole input P"),
    (
        "MaxPool",
        _ceil_drops_last_window,
        "OpenVINO's MaxPool keeps a ceil_mode window that starts past the input",
    ),
    (
        "NonMaxSuppression",
        always,
        "OpenVINO's NonMaxSuppression also suppresses boxes whose IoU equals iou_threshold",
    ),
    (
        "QuantizeLinear",
        _output_is("uint16"),
        "OpenVINO's CPU QuantizeLinear to uint16 rounds halves toward zero, not to even",
    ),
    (
        "ReduceMax",
        _empty_float_reduction,
        "OpenVINO's ReduceMax over an empty axis gives -FLT_MAX, not -inf",
    ),
    ("Resize", lambda n: attribute(n, "antialias", 0) == 1, "OpenVINO's Resize ignores antialias"),
    (
        "Resize",
        lambda n: attribute(n, "exclude_outside", 0) == 1,
        "OpenVINO's Resize ignores exclude_outside",
    ),
    (
        "Resize",
        lambda n: attribute(n, "keep_aspect_ratio_policy", "stretch") != "stretch",
        "OpenVINO's Resize ignores keep_aspect_ratio_policy",
    ),
    (
        "Resize",
        _unrounded_align_corners,
        "OpenVINO's Resize maps align_corners with the unrounded input length * scale",
    ),
    (
        "RoiAlign",
        lambda n: attribute(n, "mode", "avg") == "max",
        "OpenVINO's RoiAlign pools mode=max samples otherwise than ONNX's reference",
    ),
    (
        "SpaceToDepth",
        lambda n: attribute(n, "mode", "DCR") == "CRD",
        "OpenVINO's ONNX frontend ignores SpaceToDepth's mode=CRD",
    ),
    (
        "Tile",
        _runtime_repeats_on_rank_4_or_more,
        "OpenVINO's CPU Tile returns garbage for run-time repeats on a rank-4+ input",
    ),
    (
        "TopK",
        _indices_used,
        "OpenVINO's TopK orders the indices of equal values unstably",
    ),
)
