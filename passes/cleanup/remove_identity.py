"""remove-identity: drop nodes whose output equals one of their inputs.

Exporters leave Identity, inference-mode Dropout, Casts to the type a value already has,
Reshapes to its own shape, and similar no-ops behind; each costs a copy or a kernel launch on a
target and hides patterns from the fusion passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from ir.node_ids import describe_node
from passes.base import Pass, PassConfig, PassLog
from passes.rewrite import (
    broadcast_keeps_shape,
    constant_array,
    default_opset,
    forward_uses,
    is_nondeterministic,
    output_handover_blocker,
)

_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class NoOp:
    """The node's first output equals `source`; `why` says so in words."""

    source: oir.Value
    why: str


@dataclass(frozen=True)
class Blocked:
    """The node looks like a no-op but is not one, or cannot be shown to be one."""

    why: str


Verdict = NoOp | Blocked | None


class RemoveIdentity(Pass):
    name = "remove-identity"
    summary = "remove Identity, inference Dropout and other nodes that pass a value through"
    config_type = PassConfig

    def run(self, model: oir.Model, log: PassLog) -> None:
        opset = default_opset(model)
        for graph in model.graphs():
            for node in list(graph):
                if node.domain not in ("", "ai.onnx") or node.op_type not in _CHECKS:
                    continue
                rule, check = _CHECKS[node.op_type]
                verdict = check(node, node.version or opset)
                if isinstance(verdict, Blocked):
                    log.skip([node], rule=rule, reason=f"kept {describe_node(node)}: {verdict.why}")
                elif isinstance(verdict, NoOp):
                    _remove(graph, node, verdict, rule, log)


def _remove(graph: oir.Graph, node: oir.Node, verdict: NoOp, rule: str, log: PassLog) -> None:
    output, source = node.outputs[0], verdict.source
    blocker = output_handover_blocker(output, source)
    if blocker is not None:
        log.skip(
            [node],
            rule=rule,
            reason=f"kept {describe_node(node)}: it {verdict.why}, but its output "
            f"'{output.name}' is a graph output and {blocker}",
        )
        return
    reason = f"{describe_node(node)} {verdict.why}; readers of '{output.name}' now read "
    reason += f"'{source.name}'"
    if output.is_graph_output():
        reason += f", which takes over the graph output name '{output.name}'"
    forward_uses(output, source)
    log.removed([node], rule=rule, reason=reason)
    graph.remove(node, safe=True)


def _is_read(value: oir.Value) -> bool:
    return bool(value.uses()) or value.is_graph_output()


def _operand(
    node: oir.Node, attribute: str, index: int, default: list[int] | None = None
) -> list[int] | None:
    """An int list given as an attribute (older opsets) or as constant input `index` (newer
    ones); `default` when the node has neither, None when it is computed at run time."""
    if attribute in node.attributes:
        return [int(v) for v in node.attributes.get_ints(attribute)]
    if index < len(node.inputs) and node.inputs[index] is not None:
        array = constant_array(node.inputs[index])
        return None if array is None else [int(v) for v in np.ravel(array)]
    return default


def _identity(node: oir.Node, opset: int) -> Verdict:
    return NoOp(node.inputs[0], "passes its input through")


def _dropout(node: oir.Node, opset: int) -> Verdict:
    if len(node.outputs) > 1 and _is_read(node.outputs[1]):
        return Blocked(f"its mask output '{node.outputs[1].name}' is read")
    if opset < 7 and not node.attributes.get_int("is_test", 0):
        return Blocked("is_test=0 puts this Dropout in training mode")
    if is_nondeterministic(node):
        return Blocked(f"its training_mode '{node.inputs[2].name}' is not a constant false")
    return NoOp(node.inputs[0], "runs in inference mode")


def _cast(node: oir.Node, opset: int) -> Verdict:
    source = node.inputs[0]
    if node.op_type == "Cast":
        to = node.attributes.get_int("to")
        target = None if to is None else oir.DataType(to)
    else:  # CastLike
        target = node.inputs[1].dtype
    if source.dtype is None or target != source.dtype:
        return None
    return NoOp(source, f"casts to {target.name}, which '{source.name}' already is")


def _reshape(node: oir.Node, opset: int) -> Verdict:
    source, target = node.inputs[0], _operand(node, "shape", 1)
    if source.shape is None or target is None:
        return None
    dims, allowzero = list(source.shape), node.attributes.get_int("allowzero", 0)
    if len(target) != len(dims) or target.count(-1) > 1:
        return None
    # With every other dim equal, a -1 resolves to the one remaining dim.
    if all(
        t == -1 or (t == 0 and not allowzero) or (isinstance(d, int) and t == d)
        for t, d in zip(target, dims, strict=True)
    ):
        return NoOp(source, f"reshapes '{source.name}' to its own shape {source.shape}")
    return None


def _expand(node: oir.Node, opset: int) -> Verdict:
    source, target = node.inputs[0], _operand(node, "shape", 1)
    if (
        source.shape is None
        or target is None
        or not broadcast_keeps_shape(source.shape, tuple(target))
    ):
        return None
    return NoOp(source, f"expands '{source.name}' {source.shape} by {oir.Shape(target)}")


def _transpose(node: oir.Node, opset: int) -> Verdict:
    source, perm = node.inputs[0], node.attributes.get_ints("perm")
    if perm is None:  # the default reverses the axes
        identity = source.shape is not None and len(source.shape) <= 1
    else:
        identity = list(perm) == list(range(len(perm)))
    return NoOp(source, "transposes with the identity permutation") if identity else None


def _pad(node: oir.Node, opset: int) -> Verdict:
    pads = _operand(node, "pads", 1) or _operand(node, "paddings", 1)
    if pads is None or any(pads):
        return None
    return NoOp(node.inputs[0], "pads by zero on every side")


def _slice(node: oir.Node, opset: int) -> Verdict:
    source = node.inputs[0]
    starts, ends = _operand(node, "starts", 1), _operand(node, "ends", 2)
    if source.shape is None or starts is None or ends is None:
        return None
    axes = _operand(node, "axes", 3, list(range(len(starts))))
    steps = _operand(node, "steps", 4, [1] * len(starts))
    if axes is None or steps is None or 0 in steps:
        return None
    rank = len(source.shape)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        dim = source.shape[axis + rank if axis < 0 else axis]
        if isinstance(dim, int):
            # ONNX clamps starts and ends exactly as a Python slice does.
            full = range(dim)[start:end:step] == range(dim)
        else:
            full = start == 0 and end == _INT64_MAX and step == 1
        if not full:
            return None
    return NoOp(source, f"slices the full range of '{source.name}'")


# op -> (the constant that leaves the other operand unchanged, what the op does with it,
# whether the constant may be either operand). x + 0 turns -0.0 into +0.0, which compares equal.
_NEUTRAL = {
    "Add": (0, "adds constant 0", True),
    "Sub": (0, "subtracts constant 0", False),
    "Mul": (1, "multiplies by constant 1", True),
    "Div": (1, "divides by constant 1", False),
}


def _arithmetic(node: oir.Node, opset: int) -> Verdict:
    neutral, what, commutative = _NEUTRAL[node.op_type]
    for source_index, constant_index in ((0, 1), (1, 0))[: 2 if commutative else 1]:
        source, constant = node.inputs[source_index], constant_array(node.inputs[constant_index])
        if constant is None or not np.all(constant == neutral):
            continue
        if source.shape is None:
            return Blocked(
                f"it {what}, but the shape of '{source.name}' is unknown, so broadcasting "
                "cannot be ruled out"
            )
        if not broadcast_keeps_shape(source.shape, constant.shape):
            return Blocked(
                f"it {what}, but broadcasting with the {oir.Shape(constant.shape)} constant "
                f"changes the shape of '{source.name}' {source.shape}"
            )
        return NoOp(source, what)
    return None


_CHECKS: dict[str, tuple[str, Callable[[oir.Node, int], Verdict]]] = {
    "Identity": ("identity", _identity),
    "Dropout": ("dropout", _dropout),
    "Cast": ("cast", _cast),
    "CastLike": ("cast", _cast),
    "Reshape": ("reshape", _reshape),
    "Expand": ("expand", _expand),
    "Transpose": ("transpose", _transpose),
    "Pad": ("pad", _pad),
    "Slice": ("slice", _slice),
    **{op: ("arithmetic", _arithmetic) for op in _NEUTRAL},
}
