"""quantize-int8: post-training int8 quantization into an ONNX QDQ graph.

The FP32 model runs over a calibration set (seeded synthetic batches or an .npz of real inputs)
with every activation that a quantized op reads added as an output; an observer per tensor picks
its range. The result keeps the float ops and marks the int8 boundaries with
QuantizeLinear/DequantizeLinear pairs, the form runtimes pattern-match into their integer
kernels: DQ->MatMul into com.microsoft MatMulIntegerToFloat, DQ->Gemm into com.microsoft QGemm
and DQ->Conv->Q into QLinearConv. Conv therefore gets its output quantized too (QLinearConv
writes int8), while MatMul and Gemm keep float outputs (those fused kernels write float).
Weights are stored as int8 with one scale per output channel, biases as int32 at input scale x
weight scale, as the integer kernels expect. Outputs of Softmax/Sigmoid keep their whole [0, 1]
range.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir

from ir.errors import AsicperfError
from ir.node_ids import describe_node, node_id
from ir.reference import reference_session
from ir.seeded_inputs import seeded_inputs
from passes.audit import ChangeKind
from passes.base import Pass, PassLog
from passes.contracts import CONSTANT_WEIGHTS
from passes.layer_scope import LayerScopeConfig, check_op_scope
from passes.option_range import bounded
from passes.precision.calibration import (
    ActivationMode,
    ActivationQuantization,
    ObserverName,
    RangeObserver,
    activation_quantization,
    make_observer,
    per_channel_scales,
    quantize_per_channel,
)
from passes.rewrite import add_initializer, constant_array, default_opset, produced_by

QUANTIZABLE = ("Conv", "Gemm", "MatMul")
# Per-channel DequantizeLinear (its `axis`) arrived in opset 13.
MIN_OPSET = 13
# Ops whose outputs lie in [0, 1] whatever their inputs.
_UNIT_RANGE_OPS = frozenset({"Softmax", "Sigmoid", "HardSigmoid"})


@dataclass(frozen=True)
class QuantizeInt8Config(LayerScopeConfig):
    """`observer`: how an activation's range is picked (`percentile` is its p, in (0, 100]).
    `activations`: symmetric int8 with zero point 0, or asymmetric uint8 with a zero point.
    `calibration`: a number of seeded synthetic batches, or an .npz of inputs keyed by input
    name whose first axis lists the samples (one run each). `include` / `exclude`: op types or
    node ids (n12) to quantize / to leave in float."""

    observer: ObserverName = "minmax"
    percentile: float = bounded(99.99, low=0, high=100, low_open=True)
    activations: ActivationMode = "symmetric"
    calibration: str = "8"
    include: tuple[str, ...] = QUANTIZABLE
    exclude: tuple[str, ...] = ()

    def layer_op_types(self) -> frozenset[str]:
        return frozenset(self.include)

    def __post_init__(self) -> None:
        super().__post_init__()
        for option, value, hint in (
            ("observer", self.observer, ObserverName),
            ("activations", self.activations, ActivationMode),
        ):
            allowed = typing.get_args(hint)
            if value not in allowed:
                expected = ", ".join(allowed)
                raise ValueError(f"unknown {option} '{value}' (expected one of {expected})")
        if self.calibration_batches is not None and self.calibration_batches <= 0:
            raise ValueError(f"calibration={self.calibration}: the calibration set is empty")
        check_op_scope(self.include, self.exclude, QUANTIZABLE)

    @property
    def calibration_batches(self) -> int | None:
        """The number of synthetic batches, or None when `calibration` is a file."""
        try:
            return int(self.calibration)
        except ValueError:
            return None


@dataclass(frozen=True)
class _Site:
    """A node to quantize: the inputs read as activations, its constant weight (input 1) with
    its output-channel axis, and whether its bias (input 2) becomes int32."""

    node: oir.Node
    activations: tuple[oir.Value, ...]
    weight_axis: int | None
    bias: bool

    @property
    def quantizes_output(self) -> bool:
        return self.node.op_type == "Conv"


class QuantizeInt8(Pass):
    name = "quantize-int8"
    summary = "calibrate activations and rewrite MatMul/Gemm/Conv to int8 as a QDQ graph"
    config_type = QuantizeInt8Config
    # Only constant weights are quantized; the int8 weights it leaves behind DequantizeLinear
    # nodes are constant subgraphs again (that fold-constants would turn back into floats).
    requires = (CONSTANT_WEIGHTS,)
    invalidates = (CONSTANT_WEIGHTS,)

    def run(self, model: oir.Model, log: PassLog) -> None:
        sites = []
        for node in list(model.graph):
            if node.domain != "" or node.op_type not in QUANTIZABLE:
                continue
            reason = self._excluded(node) or _unquantizable(node)
            if reason is not None:
                log.skip([node], rule="quantize", reason=f"{describe_node(node)} {reason}")
            else:
                sites.append(_site(node))
        if not sites:
            return
        opset = default_opset(model)
        if opset < MIN_OPSET:
            raise AsicperfError(
                f"quantize-int8: the model imports opset {opset}; per-channel DequantizeLinear "
                f"needs opset >= {MIN_OPSET} (convert the model first)"
            )
        tensors = _tensors_to_calibrate(sites)
        observers = _calibrate(model, tensors, self.config)
        symmetric = self.config.activations == "symmetric"
        ranges = {value: _activation_range(value, observers[value], symmetric) for value in tensors}
        quantized = {value: activation_quantization(*ranges[value], symmetric) for value in tensors}
        outputs = {site.node.outputs[0] for site in sites if site.quantizes_output}
        for value in tensors:
            calibration = _describe_calibration(value, observers[value], ranges[value])
            _insert_qdq(model.graph, value, quantized[value], calibration, sites, outputs, log)
        for site in sites:
            if site.weight_axis is not None:
                _quantize_weights(model.graph, site, quantized[site.activations[0]], log)

    def _excluded(self, node: oir.Node) -> str | None:
        identifier = node_id(node)
        for name in (node.op_type, identifier):
            if name in self.config.exclude:
                return f"not quantized: excluded by exclude={name}"
        if node.op_type not in self.config.include and identifier not in self.config.include:
            return f"not quantized: neither {node.op_type} nor {identifier} is in include"
        if not self.config.in_scope(node):
            return "not quantized: outside the layer scope (kept FP32)"
        return None


def _unquantizable(node: oir.Node) -> str | None:
    """Why `node` cannot become a QDQ int8 op, as the end of a skip reason."""
    for value in node.inputs[:2]:
        if produced_by(value, "DequantizeLinear") is not None:
            return f"is already quantized: '{value.name}' comes from a DequantizeLinear"
    for value in [*node.inputs, node.outputs[0]]:
        if value is not None and value.dtype != oir.DataType.FLOAT:
            dtype = "unknown" if value.dtype is None else value.dtype.name
            return f"not quantized: '{value.name}' is {dtype}, only FLOAT is quantized"
    if constant_array(node.inputs[0]) is not None:
        return f"not quantized: its first input '{node.inputs[0].name}' is a constant"
    weight = constant_array(node.inputs[1])
    if node.op_type == "Conv" and weight is None:
        return f"not quantized: Conv weight '{node.inputs[1].name}' is not a constant"
    if node.op_type == "MatMul" and weight is not None and weight.ndim != 2:
        return f"not quantized: MatMul weight has rank {weight.ndim}, per-channel needs rank 2"
    if node.op_type == "Gemm":
        alpha = node.attributes.get_float("alpha", 1.0)
        beta = node.attributes.get_float("beta", 1.0)
        if (alpha, beta) != (1.0, 1.0):
            return f"not quantized: Gemm alpha={alpha} beta={beta}; the int32 bias needs 1 and 1"
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        bias = constant_array(node.inputs[2])
        channels = None if weight is None else weight.shape[_weight_axis(node)]
        if bias is None or bias.shape != (channels,):
            return (
                f"not quantized: bias '{node.inputs[2].name}' is not a constant vector of one "
                "value per output channel"
            )
    return None


def _weight_axis(node: oir.Node) -> int:
    """The output-channel axis of the weight: Conv W [Cout, ...] and Gemm B with transB are
    [N, K]; MatMul B and plain Gemm B are [K, N]."""
    transposed = node.op_type == "Gemm" and node.attributes.get_int("transB", 0)
    return 0 if node.op_type == "Conv" or transposed else 1


def _site(node: oir.Node) -> _Site:
    weight = constant_array(node.inputs[1])
    activations = (node.inputs[0],) if weight is not None else tuple(node.inputs[:2])
    axis = None if weight is None else _weight_axis(node)
    bias = len(node.inputs) > 2 and node.inputs[2] is not None
    return _Site(node, activations, axis, bias)


def _tensors_to_calibrate(sites: Sequence[_Site]) -> list[oir.Value]:
    tensors: dict[oir.Value, None] = {}
    for site in sites:
        tensors.update(dict.fromkeys(site.activations))
        if site.quantizes_output:
            tensors[site.node.outputs[0]] = None
    return list(tensors)


def _calibration_feeds(model: oir.Model, config: QuantizeInt8Config) -> list[dict[str, np.ndarray]]:
    """One feed per calibration run: seeded synthetic batches (seeds 0, 1, ...), or the samples
    of an .npz, each fed as a batch of one (or as is, when the array has one more axis than the
    input)."""
    count = config.calibration_batches
    if count is not None:
        # integers 0/1: valid token ids, token types and attention masks for any vocabulary,
        # as the bench's seeded batch has them
        return [seeded_inputs(model, seed, int_high=2) for seed in range(count)]
    path = Path(config.calibration)
    try:
        with np.load(path) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        message = f"quantize-int8: cannot read calibration file {path}: {error}"
        raise AsicperfError(message) from None
    inputs = [value for value in model.graph.inputs if not value.is_initializer()]
    missing = [value.name for value in inputs if value.name not in arrays]
    if missing:
        raise AsicperfError(f"quantize-int8: calibration file {path} has no array {missing[0]!r}")
    samples = {len(arrays[value.name]) for value in inputs}
    if len(samples) > 1:
        counts = ", ".join(f"{value.name}: {len(arrays[value.name])}" for value in inputs)
        raise AsicperfError(
            f"quantize-int8: calibration file {path} has differing sample counts ({counts})"
        )
    if not samples or 0 in samples:
        raise AsicperfError(f"quantize-int8: calibration file {path} holds no samples")
    feeds = []
    for index in range(samples.pop()):
        feed = {}
        for value in inputs:
            array = arrays[value.name]
            rank = len(value.shape) if value.shape is not None else array.ndim - 1
            sample = array[index] if array.ndim == rank + 1 else array[index : index + 1]
            feed[value.name] = sample if value.dtype is None else sample.astype(value.dtype.numpy())
        feeds.append(feed)
    return feeds


def _calibrate(
    model: oir.Model, tensors: Sequence[oir.Value], config: QuantizeInt8Config
) -> dict[oir.Value, RangeObserver]:
    """Run the FP32 model on every calibration feed with `tensors` as extra outputs."""
    proto = oir.to_proto(model)
    present = {output.name for output in proto.graph.output}
    inputs = {value.name for value in model.graph.inputs}
    proto.graph.output.extend(
        onnx.ValueInfoProto(name=value.name)
        for value in tensors
        if value.name not in present and value.name not in inputs
    )
    session = reference_session(proto.SerializeToString())
    observers = {value: make_observer(config.observer, config.percentile) for value in tensors}
    computed = [value for value in tensors if value.name not in inputs]
    for feed in _calibration_feeds(model, config):
        arrays = session.run([value.name for value in computed], feed) if computed else []
        for value, array in zip(computed, arrays, strict=True):
            observers[value].update(array)
        for value in tensors:
            if value.name in inputs:
                observers[value].update(feed[value.name])
    return observers


def _activation_range(
    value: oir.Value, observer: RangeObserver, symmetric: bool
) -> tuple[float, float]:
    """The observer's range, except for outputs whose range the op fixes: a clipping observer
    (entropy) would cut the few large attention probabilities of a Softmax that matter most."""
    if _fixed_range_op(value) is not None:
        return (-1.0, 1.0) if symmetric else (0.0, 1.0)
    return observer.range(symmetric)


def _fixed_range_op(value: oir.Value) -> str | None:
    producer = value.producer()
    if producer is not None and producer.domain == "" and producer.op_type in _UNIT_RANGE_OPS:
        return producer.op_type
    return None


def _describe_calibration(
    value: oir.Value, observer: RangeObserver, chosen: tuple[float, float]
) -> str:
    low, high = chosen
    fixed = _fixed_range_op(value)
    source = f"range fixed by {fixed}" if fixed is not None else "range"
    return (
        f"{observer.name} observer: seen [{observer.seen_min:.6g}, {observer.seen_max:.6g}], "
        f"{source} [{low:.6g}, {high:.6g}]"
    )


def _scalar(graph: oir.Graph, name: str, value: float | int, dtype: type) -> oir.Value:
    return add_initializer(graph, name, np.array(value, dtype=dtype))


def _dequantize(
    value: oir.Value, scale: oir.Value, zero_point: oir.Value, axis: int | None, name: str
) -> oir.Node:
    attributes = {} if axis is None else {"axis": axis}
    node = oir.node("DequantizeLinear", [value, scale, zero_point], attributes)
    node.outputs[0].name = name
    node.outputs[0].dtype = oir.DataType.FLOAT
    node.outputs[0].shape = value.shape
    return node


def _quantize(value: oir.Value, scale: oir.Value, zero_point: oir.Value, name: str) -> oir.Node:
    node = oir.node("QuantizeLinear", [value, scale, zero_point])
    node.outputs[0].name = name
    node.outputs[0].dtype = zero_point.dtype
    node.outputs[0].shape = value.shape
    return node


def _insert_qdq(
    graph: oir.Graph,
    value: oir.Value,
    params: ActivationQuantization,
    calibration: str,
    sites: Sequence[_Site],
    quantized_outputs: set[oir.Value],
    log: PassLog,
) -> None:
    """Q/DQ between `value` and its quantized readers, each reader with a pair of its own, down
    to its own scale and zero-point initializers: QDQ fusion (which may also turn int8 into a
    faster uint8) takes only a Q->DQ with one reader, and common-subexpression elimination
    would merge identical pairs back into one. When `value` is a Conv output every reader, a
    graph output included, reads through one shared Q, as QLinearConv needs that Q to be the
    Conv's only reader."""
    name = value.name
    shared = value in quantized_outputs
    site_nodes = {site.node for site in sites}
    readers = dict.fromkeys(node for node, _ in value.uses() if shared or node in site_nodes)
    new_nodes: list[oir.Node] = []
    dequantized: dict[oir.Node, oir.Node] = {}
    for reader in [None, *readers] if shared else readers:
        suffix = "" if reader is None else f"_{node_id(reader)}"
        if reader is None or not shared:
            scale = _scalar(graph, f"{name}_scale", params.scale, np.float32)
            zero_point = _scalar(graph, f"{name}_zero_point", params.zero_point, params.dtype)
            quantize = _quantize(value, scale, zero_point, f"{name}_quantized{suffix}")
            new_nodes.append(quantize)
        if reader is not None:
            dequantized[reader] = _dequantize(
                quantize.outputs[0], scale, zero_point, None, f"{name}_dq{suffix}"
            )
            new_nodes.append(dequantized[reader])
    if shared and value.is_graph_output():
        output = _dequantize(new_nodes[0].outputs[0], scale, zero_point, None, name)
        value.name = f"{name}_float"
        graph.outputs[graph.outputs.index(value)] = output.outputs[0]
        new_nodes.append(output)
    producer = value.producer()
    if producer is None:
        graph.insert_before(next(iter(graph)), new_nodes)
    else:
        graph.insert_after(producer, new_nodes)
    kind = "int8" if params.dtype is np.int8 else "uint8"
    reason = (
        f"activation '{name}' quantized per tensor to {kind}: scale={params.scale:.6g} "
        f"zero_point={params.zero_point} ({calibration})"
    )
    for node in new_nodes:
        log.added(node, rule="activation", reason=reason)
    for reader, dequantize in dequantized.items():
        for index, input_value in enumerate(reader.inputs):
            if input_value is value:
                reader.replace_input_with(index, dequantize.outputs[0])
        log.changed(
            ChangeKind.REWIRED,
            [reader],
            rule="activation",
            reason=f"{describe_node(reader)} reads '{name}' through Quantize/DequantizeLinear",
        )


def _quantize_weights(
    graph: oir.Graph, site: _Site, input_params: ActivationQuantization, log: PassLog
) -> None:
    """Weight -> int8 per output channel behind a DequantizeLinear; bias -> int32 with scale
    input scale x weight scale and zero point 0, what the integer kernels add in."""
    node, axis = site.node, site.weight_axis
    assert axis is not None
    weight_value = node.inputs[1]
    weight = constant_array(weight_value)
    scales = per_channel_scales(weight, axis)
    name = weight_value.name or "weight"
    dequantized = [
        _dequantize(
            add_initializer(graph, f"{name}_int8", quantize_per_channel(weight, scales, axis)),
            add_initializer(graph, f"{name}_scale", scales),
            add_initializer(graph, f"{name}_zero_point", np.zeros(scales.size, np.int8)),
            axis,
            f"{name}_dq",
        )
    ]
    reasons = [
        f"weight '{name}' of {describe_node(node)} stored as int8 per channel (axis {axis}: "
        f"{scales.size} scales in [{scales.min():.6g}, {scales.max():.6g}], max|w|/127)"
    ]
    if site.bias:
        bias_value = node.inputs[2]
        bias_scales = (np.float32(input_params.scale) * scales).astype(np.float32)
        bias = np.round(constant_array(bias_value) / bias_scales).astype(np.int32)
        bias_name = bias_value.name or "bias"
        dequantized.append(
            _dequantize(
                add_initializer(graph, f"{bias_name}_int32", bias),
                add_initializer(graph, f"{bias_name}_scale", bias_scales),
                add_initializer(graph, f"{bias_name}_zero_point", np.zeros(bias.size, np.int32)),
                0,
                f"{bias_name}_dq",
            )
        )
        reasons.append(
            f"bias '{bias_name}' of {describe_node(node)} stored as int32 at input scale x "
            "weight scale, zero point 0"
        )
    graph.insert_before(node, dequantized)
    for index, (dequantize, reason) in enumerate(zip(dequantized, reasons, strict=True), 1):
        old = node.inputs[index]
        node.replace_input_with(index, dequantize.outputs[0])
        if not old.uses() and not old.is_graph_output() and not old.is_graph_input():
            graph.initializers.pop(old.name, None)
        rule = "weight" if index == 1 else "bias"
        log.added(dequantize, rule=rule, reason=reason)
        log.changed(ChangeKind.REWIRED, [node], rule=rule, reason=reason)
