"""fuse-activation: an activation right after a Conv or Gemm becomes the epilogue of the fused op
the target runs, so the activation costs no extra pass over memory.

Which pairs fuse is a property of the target's kernels, not of ONNX: a target declares its fused
convolution and matrix product (`FusedOp` "FusedConv" and "FusedGemm" of com.microsoft) with the
activations their epilogues apply and how they take an activation's parameters as attributes
("activation_params": one list; "alpha_beta": activation_alpha and activation_beta). Without a
target (the default) nothing is fused and each site says why. Activations no declaration lists
are still looked at, so that the pairs a target lacks are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from ir.ops.activation import ACTIVATION_FLOPS
from passes.base import PassConfig
from passes.contracts import CONSTANT_WEIGHTS
from passes.engine.match import Match
from passes.engine.patterns import Op
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Emits, Rewrite, RewriteContext, Rule
from passes.rewrite import NoMatch, constant_array, non_constant_reason

MICROSOFT = "com.microsoft"
# Activations a fusion is looked for after, so that the ones a target lacks are reported.
_ACTIVATIONS = frozenset({*ACTIVATION_FLOPS, "Gelu", "FastGelu", "QuickGelu"})
# Attributes of the activations that take parameters, in the order fused ops expect them.
_PARAMETERS: dict[str, tuple[tuple[str, float], ...]] = {
    "LeakyRelu": (("alpha", 0.01),),
    "HardSigmoid": (("alpha", 0.2), ("beta", 0.5)),
    "Elu": (("alpha", 1.0),),
}
_FLOAT32_RANGE = np.finfo(np.float32)


@dataclass(frozen=True)
class FuseActivationConfig(PassConfig):
    """`target`: the registered target whose declared fused ops to emit ("" for none, which
    fuses nothing)."""

    target: str = ""


def _clip_bound_inputs(clip: oir.Node) -> list[tuple[int, str, oir.Value]]:
    """Clip's min and max inputs that are given (since opset 11; before, they are attributes)."""
    named = zip(("min", "max"), clip.inputs[1:3], strict=False)
    return [(index, name, value) for index, (name, value) in enumerate(named) if value is not None]


def _parameters(activation: oir.Node) -> list[float]:
    """The activation's parameters, in the order fused ops take them; NoMatch for Clip bounds
    known only at run time."""
    if activation.op_type == "Clip":
        bounds = [
            activation.attributes.get_float("min", float(_FLOAT32_RANGE.min)),
            activation.attributes.get_float("max", float(_FLOAT32_RANGE.max)),
        ]
        for index, name, value in _clip_bound_inputs(activation):
            bound = constant_array(value)
            if bound is None:
                raise NoMatch(f"Clip {name} '{value.name}' {non_constant_reason(value)}")
            bounds[index] = float(bound)
        return bounds
    return [
        activation.attributes.get_float(name, default)
        for name, default in _PARAMETERS.get(activation.op_type, ())
    ]


def _parameter_attributes(convention: str, parameters: list[float]) -> dict[str, object] | None:
    """`parameters` as the attributes of a fused op following `convention` (see
    `FusedOp.attributes`); None when the convention cannot carry them."""
    if not parameters:
        return {}
    if convention == "activation_params":
        return {"activation_params": parameters}
    if convention == "alpha_beta" and len(parameters) <= 2:
        return dict(zip(("activation_alpha", "activation_beta"), parameters, strict=False))
    return None


def _dtype_name(dtype: oir.DataType | None) -> str | None:
    """numpy's name for `dtype` ("float32"), as capabilities spell element types."""
    return None if dtype is None else np.dtype(dtype.numpy()).name


def _epilogue(match: Match, context: RewriteContext) -> Rewrite:
    """The target's fused op computing the anchor with the activation as its epilogue."""
    anchor, activation = match.node("anchor"), match.root
    fused = context.declaration
    assert fused is not None, "a com.microsoft op is emitted only as a target declares it"
    owner = f"{context.target}'s {fused.op_type}"
    if activation.domain != "" or activation.op_type not in fused.epilogues:
        raise NoMatch(f"{owner} has no {activation.op_type} epilogue")
    dtype = anchor.outputs[0].dtype
    if _dtype_name(dtype) not in fused.dtypes:
        raise NoMatch(
            f"{owner} is only known to run {', '.join(sorted(fused.dtypes))}; "
            f"{anchor.op_type} output is {dtype or 'of unknown type'}"
        )
    parameters = _parameter_attributes(fused.attributes, _parameters(activation))
    if parameters is None:
        raise NoMatch(f"{owner} declares no attributes for {activation.op_type}'s parameters")
    attributes = {**anchor.attributes, "activation": activation.op_type, **parameters}
    node = oir.node(fused.op_type, anchor.inputs, attributes, domain=fused.domain, name=anchor.name)
    return Rewrite(
        (node,),
        {activation.outputs[0]: node.outputs[0]},
        f"{activation.op_type} runs as the epilogue of {owner}",
    )


def _rule(anchor: str, fused: str) -> Rule:
    """`anchor` -> activation becomes the target's `fused` op, rule "{anchor}-activation"."""
    pattern = Op(
        _ACTIVATIONS,
        inputs=(Op(anchor, capture="anchor"),),
        domain=frozenset({"", MICROSOFT}),
    )
    return Rule(
        f"{anchor.lower()}-activation", pattern, _epilogue, requires=Emits(fused, MICROSOFT)
    )


class FuseActivation(RuleSetPass):
    """Conv/Gemm -> activation becomes the target's fused op with that activation."""

    name = "fuse-activation"
    summary = "fold an activation after Conv or Gemm into the target's fused op"
    config_type = FuseActivationConfig
    requires = (CONSTANT_WEIGHTS,)  # Clip's bounds are read as constants
    rules = (_rule("Conv", "FusedConv"), _rule("Gemm", "FusedGemm"))
