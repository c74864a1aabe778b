"""How a fusion pass learns what it may emit: its `target` option names a registered target,
whose declared `Capabilities` answer; the pass never compares names.

With no target (the option left empty) a pass emits only standard ONNX ops that the model's
opset defines, which every conforming runtime runs. The registry is imported when a name is
first resolved, not when passes/ is imported: targets build on passes, not the other way round.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import onnx

from ir.capabilities import Capabilities, FusedOp
from ir.errors import AsicperfError
from passes.base import PassConfig


@functools.cache
def capabilities_of(target: str) -> Capabilities:
    """The capabilities target `target` declares; an unknown name is a one-line error."""
    from targets.registry import TARGETS

    return TARGETS.load(target)().capabilities()


def check_target_name(target: str) -> None:
    """Raise the registry's one-line error for a name no installed target has ("" is none).
    Only the target's class is loaded: its capabilities, which may import a compiler, are
    asked for when a pass first needs them."""
    if target:
        from targets.registry import TARGETS

        TARGETS.load(target)


@dataclass(frozen=True)
class TargetedPassConfig(PassConfig):
    """Options of a pass whose output depends on what a target runs: `target` names the
    registered target to emit fused ops for ("" for none: standard ONNX ops only). The name is
    checked when the config is built, so a typo fails before any work rather than skipping
    every site; as a ValueError, which the pipeline parser reports naming the pass."""

    target: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            check_target_name(self.target)
        except AsicperfError as error:
            raise ValueError(str(error)) from None


@dataclass(frozen=True)
class Emittable:
    """Whether a pass may emit `domain.op_type` for a target: the declaration that allows it
    (None for a standard ONNX op), or why not."""

    allowed: bool
    declaration: FusedOp | None = None
    why_not: str = ""


def _onnx_defines(op_type: str, opset: int) -> bool:
    try:
        onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return False
    return True


def can_emit(target: str, op_type: str, domain: str, opset: int) -> Emittable:
    """May a pass emit `domain.op_type` into a model importing default-domain `opset`, for
    `target` ("" for none)? A declared fused op that the target runs at `opset` may be emitted;
    so may a standard ONNX op the opset defines, when the target runs it (any target, when none
    is given)."""
    name = f"{domain}.{op_type}" if domain else op_type
    if target:
        capabilities = capabilities_of(target)
        declared = capabilities.fused_op(op_type, domain, opset)
        if declared is not None:
            return Emittable(True, declared)
        if domain == "" and _onnx_defines(op_type, opset) and capabilities.runs_op("", op_type):
            return Emittable(True)
        return Emittable(False, why_not=f"target '{target}' declares no {name} at opset {opset}")
    if domain == "" and _onnx_defines(op_type, opset):
        return Emittable(True)
    why = (
        f"ONNX defines no {name} at opset {opset}"
        if domain == ""
        else f"{name} is not a standard ONNX op"
    )
    return Emittable(False, why_not=f"{why} and no target is given (target=NAME)")
