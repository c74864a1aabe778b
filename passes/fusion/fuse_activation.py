"""fuse-activation: an activation right after a Conv or Gemm becomes the epilogue of the fused op
the target runs, so the activation costs no extra pass over memory.

Which pairs fuse is a property of the target's kernels, not of ONNX, so each target declares its
fused ops and the activations they apply; a pair is listed only once it has been seen to run and
match the unfused result. onnxruntime (CPU, float32, checked with 1.32): com.microsoft FusedConv
applies Relu, Sigmoid, Tanh, LeakyRelu, Clip, HardSigmoid and HardSwish; FusedGemm applies Relu,
Sigmoid, Tanh, LeakyRelu, HardSigmoid, Elu and Softplus (not Clip or HardSwish); neither has a
Gelu epilogue. Both also ran float16 on the checking machine, but whether a float16 kernel
exists depends on the build and the CPU, so it is not relied on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from ir.ops.activation import ACTIVATION_FLOPS
from passes.base import Pass, PassConfig, PassLog
from passes.rewrite import (
    constant_array,
    non_constant_reason,
    produced_by,
    replace_nodes,
    shared_output_reason,
)

MICROSOFT = "com.microsoft"
_ANCHORS = ("Conv", "Gemm")
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
class Epilogue:
    """A fused op of a target: the activations its kernel applies and how it takes their
    parameters as attributes."""

    op_type: str
    activations: frozenset[str]
    parameter_attributes: Callable[[list[float]], dict[str, object]]


def _fused_conv_parameters(parameters: list[float]) -> dict[str, object]:
    return {"activation_params": parameters} if parameters else {}


def _fused_gemm_parameters(parameters: list[float]) -> dict[str, object]:
    return dict(zip(("activation_alpha", "activation_beta"), parameters, strict=False))


# target -> anchor op -> the fused op it becomes.
EPILOGUES: dict[str, dict[str, Epilogue]] = {
    "onnxruntime": {
        "Conv": Epilogue(
            "FusedConv",
            frozenset({"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish"}),
            _fused_conv_parameters,
        ),
        "Gemm": Epilogue(
            "FusedGemm",
            frozenset({"Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Elu", "Softplus"}),
            _fused_gemm_parameters,
        ),
    },
}


@dataclass(frozen=True)
class FuseActivationConfig(PassConfig):
    """`target`: whose fused ops to emit (a key of EPILOGUES)."""

    target: str = "onnxruntime"


def _clip_bound_inputs(clip: ir.Node) -> list[tuple[int, str, ir.Value]]:
    """Clip's min and max inputs that are given (since opset 11; before, they are attributes)."""
    named = zip(("min", "max"), clip.inputs[1:3], strict=False)
    return [(index, name, value) for index, (name, value) in enumerate(named) if value is not None]


def _parameters(activation: ir.Node) -> list[float]:
    """The activation's parameters, in the order fused ops take them."""
    if activation.op_type == "Clip":
        bounds = [
            activation.attributes.get_float("min", float(_FLOAT32_RANGE.min)),
            activation.attributes.get_float("max", float(_FLOAT32_RANGE.max)),
        ]
        for index, _, value in _clip_bound_inputs(activation):
            bounds[index] = float(constant_array(value))
        return bounds
    return [
        activation.attributes.get_float(name, default)
        for name, default in _PARAMETERS.get(activation.op_type, ())
    ]


class FuseActivation(Pass):
    """Conv/Gemm -> activation becomes the target's fused op with that activation."""

    name = "fuse-activation"
    summary = "fold an activation after Conv or Gemm into the target's fused op"
    config_type = FuseActivationConfig

    def run(self, model: ir.Model, log: PassLog) -> None:
        for activation in list(model.graph):
            if activation.op_type not in _ACTIVATIONS or activation.domain not in ("", MICROSOFT):
                continue
            anchor = next(
                (node for op in _ANCHORS if (node := produced_by(activation.inputs[0], op))), None
            )
            if anchor is None:
                continue
            rule = f"{anchor.op_type.lower()}-activation"
            reason = self._reason_not_to_fuse(anchor, activation)
            if reason is not None:
                log.skip(
                    [anchor, activation],
                    rule=rule,
                    reason=f"{anchor.op_type}+{activation.op_type} not fused: {reason}",
                )
                continue
            epilogue = EPILOGUES[self.config.target][anchor.op_type]
            attributes = {
                **anchor.attributes,
                "activation": activation.op_type,
                **epilogue.parameter_attributes(_parameters(activation)),
            }
            fused = ir.node(
                epilogue.op_type, anchor.inputs, attributes, domain=MICROSOFT, name=anchor.name
            )
            model.opset_imports.setdefault(MICROSOFT, 1)
            replace_nodes(
                log,
                [anchor, activation],
                [fused],
                {activation.outputs[0]: fused.outputs[0]},
                rule=rule,
                reason=f"{activation.op_type} runs as the epilogue of {self.config.target}'s "
                f"{epilogue.op_type}",
            )

    def _reason_not_to_fuse(self, anchor: ir.Node, activation: ir.Node) -> str | None:
        target = self.config.target
        if target not in EPILOGUES:
            return f"target '{target}' declares no fused epilogues"
        reason = shared_output_reason(anchor)
        if reason is not None:
            return reason
        epilogue = EPILOGUES[target][anchor.op_type]
        if activation.domain != "" or activation.op_type not in epilogue.activations:
            return f"{target}'s {epilogue.op_type} has no {activation.op_type} epilogue"
        dtype = anchor.outputs[0].dtype
        if dtype != ir.DataType.FLOAT:
            return (
                f"{target}'s {epilogue.op_type} is only known to run float32; "
                f"{anchor.op_type} output is {dtype or 'of unknown type'}"
            )
        if activation.op_type == "Clip":
            for _, name, value in _clip_bound_inputs(activation):
                if constant_array(value) is None:
                    return f"Clip {name} '{value.name}' {non_constant_reason(value)}"
        return None
