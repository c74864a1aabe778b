"""fuse-conv-bn: fold an inference BatchNormalization into the Conv or ConvTranspose feeding it.

At inference BatchNormalization is a fixed affine map per channel, so it can live in the
convolution's weights and bias: one op instead of two, and no extra pass over the activation.
Folding needs every weight as a constant; models that build weights at run time (the light zoo
models use ConstantOfShape) need fold-constants first, and the skip reasons say so.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as oir

from passes.base import PassConfig
from passes.contracts import CONSTANT_WEIGHTS
from passes.engine.match import Match
from passes.engine.patterns import AnyValue, Const, Op, OptionalInput
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Rewrite, RewriteContext, Rule
from passes.rewrite import NoMatch, add_initializer

_DEFAULT_EPSILON = 1e-5
# BatchNormalization's per-channel inputs: how the pattern captures each, how reasons name it.
_BN_ROLES = {"scale": "scale", "beta": "bias", "mean": "mean", "variance": "variance"}


def _at_inference(bn: oir.Node) -> str | None:
    """Why `bn` is not the fixed affine map a fold needs, or None."""
    if bn.attributes.get_int("training_mode", 0):
        return "BatchNormalization is in training mode"
    if any(out.consumers() or out.is_graph_output() for out in bn.outputs[1:]):
        return "BatchNormalization's running mean and variance outputs are used"
    return None


CONV_THEN_BN = Op(
    "BatchNormalization",
    inputs=(
        Op(
            frozenset({"Conv", "ConvTranspose"}),
            inputs=(
                AnyValue("x"),
                Const("weight", role="weight"),
                OptionalInput(Const("conv_bias", role="bias")),
            ),
            capture="conv",
        ),
        *(Const(name, role=role) for name, role in _BN_ROLES.items()),
    ),
    check=_at_inference,
    capture="bn",
)


def _out_channels(conv: oir.Node, weight_shape: tuple[int, ...]) -> int:
    """Conv weights are [Cout, Cin/group, *kernel]; ConvTranspose's [Cin, Cout/group, *kernel]."""
    if conv.op_type == "Conv":
        return weight_shape[0]
    return weight_shape[1] * conv.attributes.get_int("group", 1)


def _scale_out_channels(conv: oir.Node, weight: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """`weight` with each output channel multiplied by its factor."""
    if conv.op_type == "Conv":
        return weight * factor.reshape(-1, *[1] * (weight.ndim - 1))
    group = conv.attributes.get_int("group", 1)
    grouped = weight.reshape(group, weight.shape[0] // group, *weight.shape[1:])
    factor = factor.reshape(group, 1, -1, *[1] * (weight.ndim - 2))
    return (grouped * factor).reshape(weight.shape)


def _per_channel(match: Match, channels: int) -> dict[str, np.ndarray]:
    """The conv bias (zeros when absent) and BatchNormalization's parameters, in float64;
    NoMatch unless each has one entry per output channel."""
    subjects = {name: f"BatchNormalization {role}" for name, role in _BN_ROLES.items()}
    if match.value("conv_bias") is not None:
        subjects = {"conv_bias": f"{match.node('conv').op_type} bias", **subjects}
    arrays = {}
    for name, subject in subjects.items():
        array = match.constant(name)
        if array.shape != (channels,):
            raise NoMatch(f"{subject} has shape {list(array.shape)}, expected [{channels}]")
        arrays[name] = array.astype(np.float64)
    arrays.setdefault("conv_bias", np.zeros(channels))
    return arrays


def _fold(match: Match, context: RewriteContext) -> Rewrite:
    """One convolution with W' = W * s and b' = (b - mean) * s + beta per output channel,
    s = scale / sqrt(var + eps)."""
    conv, bn = match.node("conv"), match.node("bn")
    weight_value, weight = match.value("weight"), match.constant("weight")
    params = _per_channel(match, _out_channels(conv, weight.shape))
    epsilon = bn.attributes.get_float("epsilon", _DEFAULT_EPSILON)
    factor = params["scale"] / np.sqrt(params["variance"] + epsilon)
    new_weight = _scale_out_channels(conv, weight.astype(np.float64), factor)
    new_bias = (params["conv_bias"] - params["mean"]) * factor + params["beta"]
    base = weight_value.name or "conv_weight"
    inputs = [
        match.value("x"),
        add_initializer(context.graph, f"{base}_bn_folded", new_weight.astype(weight.dtype)),
        add_initializer(context.graph, f"{base}_bn_folded_bias", new_bias.astype(weight.dtype)),
    ]
    fused = oir.node(conv.op_type, inputs, conv.attributes, name=conv.name, version=conv.version)
    return Rewrite(
        (fused,),
        {bn.outputs[0]: fused.outputs[0]},
        f"BatchNormalization folded into the {conv.op_type}'s weights and bias",
    )


class FuseConvBn(RuleSetPass):
    """Conv/ConvTranspose -> BatchNormalization becomes one convolution with folded weights."""

    name = "fuse-conv-bn"
    summary = "fold inference BatchNormalization into the Conv or ConvTranspose before it"
    config_type = PassConfig
    requires = (CONSTANT_WEIGHTS,)  # the weights are folded offline
    rules = (Rule("conv-bn", CONV_THEN_BN, build=_fold),)
