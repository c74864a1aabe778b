"""fuse-conv-bn: fold an inference BatchNormalization into the Conv or ConvTranspose feeding it.

At inference BatchNormalization is a fixed affine map per channel, so it can live in the
convolution's weights and bias: one op instead of two, and no extra pass over the activation.
Folding needs every weight as a constant; models that build weights at run time (the light zoo
models use ConstantOfShape) need fold-constants first, and the skip reasons say so.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from passes.base import Pass, PassConfig, PassLog
from passes.rewrite import (
    add_initializer,
    constant_array,
    non_constant_reason,
    produced_by,
    replace_nodes,
    shared_output_reason,
)

RULE = "conv-bn"
_CONVS = ("Conv", "ConvTranspose")
_BN_ROLES = ("scale", "bias", "mean", "variance")
_DEFAULT_EPSILON = 1e-5


class FuseConvBn(Pass):
    """Conv/ConvTranspose -> BatchNormalization becomes one convolution with folded weights:
    W' = W * s and b' = (b - mean) * s + beta per output channel, s = scale / sqrt(var + eps)."""

    name = "fuse-conv-bn"
    summary = "fold inference BatchNormalization into the Conv or ConvTranspose before it"
    config_type = PassConfig

    def run(self, model: ir.Model, log: PassLog) -> None:
        for bn in list(model.graph):
            if bn.op_type != "BatchNormalization" or bn.domain != "":
                continue
            conv = next((node for op in _CONVS if (node := produced_by(bn.inputs[0], op))), None)
            if conv is None:
                continue
            reason = _reason_not_to_fold(conv, bn)
            if reason is not None:
                log.skip(
                    [conv, bn],
                    rule=RULE,
                    reason=f"{conv.op_type}+BatchNormalization not folded: {reason}",
                )
                continue
            _fold(model.graph, conv, bn, log)


def _inputs_to_fold(conv: ir.Node, bn: ir.Node) -> list[tuple[str, ir.Value]]:
    """Each (role, value) whose contents the fold reads; the weight comes first."""
    present = [("weight", conv.inputs[1])]
    if len(conv.inputs) > 2 and conv.inputs[2] is not None:
        present.append(("bias", conv.inputs[2]))
    roles = [(f"{conv.op_type} {role}", value) for role, value in present]
    return roles + [
        (f"BatchNormalization {role}", value)
        for role, value in zip(_BN_ROLES, bn.inputs[1:5], strict=True)
    ]


def _out_channels(conv: ir.Node, weight_shape: tuple[int, ...]) -> int:
    """Conv weights are [Cout, Cin/group, *kernel]; ConvTranspose's [Cin, Cout/group, *kernel]."""
    if conv.op_type == "Conv":
        return weight_shape[0]
    return weight_shape[1] * conv.attributes.get_int("group", 1)


def _reason_not_to_fold(conv: ir.Node, bn: ir.Node) -> str | None:
    reason = shared_output_reason(conv)
    if reason is not None:
        return reason
    if bn.attributes.get_int("training_mode", 0):
        return "BatchNormalization is in training mode"
    if any(out.consumers() or out.is_graph_output() for out in bn.outputs[1:]):
        return "BatchNormalization's running mean and variance outputs are used"
    arrays = []
    for role, value in _inputs_to_fold(conv, bn):
        array = constant_array(value)
        if array is None:
            return f"{role} '{value.name}' {non_constant_reason(value)}"
        arrays.append((role, array))
    (_, weight), *per_channel = arrays
    channels = _out_channels(conv, weight.shape)
    for role, array in per_channel:
        if array.shape != (channels,):
            return f"{role} has shape {list(array.shape)}, expected [{channels}]"
    return None


def _scale_out_channels(conv: ir.Node, weight: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """`weight` with each output channel multiplied by its factor."""
    if conv.op_type == "Conv":
        return weight * factor.reshape(-1, *[1] * (weight.ndim - 1))
    group = conv.attributes.get_int("group", 1)
    grouped = weight.reshape(group, weight.shape[0] // group, *weight.shape[1:])
    factor = factor.reshape(group, 1, -1, *[1] * (weight.ndim - 2))
    return (grouped * factor).reshape(weight.shape)


def _fold(graph: ir.Graph, conv: ir.Node, bn: ir.Node, log: PassLog) -> None:
    roles = _inputs_to_fold(conv, bn)
    weight_value = roles[0][1]
    weight = constant_array(weight_value)
    arrays = [constant_array(value).astype(np.float64) for _, value in roles[1:]]
    *conv_bias, scale, beta, mean, variance = arrays
    bias = conv_bias[0] if conv_bias else np.zeros_like(scale)
    factor = scale / np.sqrt(variance + bn.attributes.get_float("epsilon", _DEFAULT_EPSILON))
    new_weight = _scale_out_channels(conv, weight.astype(np.float64), factor)
    new_bias = (bias - mean) * factor + beta
    base = weight_value.name or "conv_weight"
    inputs = [
        conv.inputs[0],
        add_initializer(graph, f"{base}_bn_folded", new_weight.astype(weight.dtype)),
        add_initializer(graph, f"{base}_bn_folded_bias", new_bias.astype(weight.dtype)),
    ]
    fused = ir.node(conv.op_type, inputs, conv.attributes, name=conv.name, version=conv.version)
    replace_nodes(
        log,
        [conv, bn],
        [fused],
        {bn.outputs[0]: fused.outputs[0]},
        rule=RULE,
        reason=f"BatchNormalization folded into the {conv.op_type}'s weights and bias",
    )
