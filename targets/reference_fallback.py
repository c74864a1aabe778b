"""The numeric check past the reference path: a model holding ops the reference path has no
kernel for, which a pass emitted for the bound target (its declared fused ops, e.g. Gelu below
opset 20), runs on that target, compiled as any model is (`compile_model`: the target runs what
it claims, the reference path the rest). What ran where goes into the audit, so a drift figure
never hides that it was measured on the target rather than on the reference path."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as oir

from ir.errors import AsicperfError, first_line
from ir.node_ids import node_id
from ir.reference import run_reference
from passes.base import PassConfig
from passes.checked_run import CheckedRun, ModelRunner
from targets.executable import Executable, compile_model
from targets.reference_target import ReferenceTarget
from targets.registry import get_target


def reference_gaps(model: oir.Model) -> dict[str, str]:
    """Node id -> op (`Gelu at opset 17`) for each main-graph node the reference path has no
    kernel for, by the reference target's own claim check (the one that partitions a model),
    on the model as the reference path runs it (bfloat16 emulated)."""
    reference = ReferenceTarget()
    capabilities = reference.capabilities()
    prepared = reference.prepare(model)
    opset = prepared.opset_imports.get("", prepared.opset_imports.get("ai.onnx"))
    return {
        node_id(node): _op_at(node, opset)
        for node in prepared.graph
        if reference.unsupported_reason(node, capabilities) is not None
    }


def _op_at(node: oir.Node, opset: int | None) -> str:
    if node.domain not in ("", "ai.onnx"):
        return f"{node.domain}.{node.op_type}"
    return f"{node.op_type} at opset {opset}" if opset is not None else node.op_type


def _listed(ops: Mapping[str, str] | list[str]) -> str:
    """Each op once, in graph order."""
    return ", ".join(dict.fromkeys(ops.values() if isinstance(ops, Mapping) else ops))


class TargetFallback(ModelRunner):
    """The reference path, and for a model it lacks ops for, the bound target (`target`, ""
    for none) with `config` (its defaults when None), sessions for `batch_size`."""

    def __init__(self, target: str, config: PassConfig | None = None, batch_size: int = 1):
        self.target = target
        self.config = config
        self.batch_size = batch_size

    def run(self, model, feeds):
        try:
            return CheckedRun(run_reference(model, feeds))
        except AsicperfError:
            gaps = reference_gaps(model)
            if not gaps:  # the reference path has every op: the model itself is at fault
                raise
        lacking = f"the reference path has no {_listed(gaps)}"
        if not self.target:
            return CheckedRun(None, reason=f"{lacking}, and no target is given to run it on")
        named = f"target '{self.target}'"
        try:
            executable = self._compile(model)
        except Exception as error:  # the vendor's compiler: it may fail any way
            reason = f"{lacking}, and {named} cannot compile it: {first_line(error)}"
            return CheckedRun(None, reason=reason)
        left = [gaps[node] for node in executable.plan.unsupported if node in gaps]
        if left:
            return CheckedRun(None, reason=f"{lacking}, and {named} runs no {_listed(left)} either")
        try:
            outputs = executable.session(self.batch_size).run(feeds)
        except Exception as error:  # the vendor's runtime, likewise
            reason = f"{lacking}, and {named} failed to run it: {first_line(error)}"
            return CheckedRun(None, reason=reason)
        return CheckedRun([np.asarray(o) for o in outputs], _ran_on(named, executable), lacking)

    def _compile(self, model: oir.Model) -> Executable:
        target = get_target(self.target)
        config = self.config if self.config is not None else target.config_type()
        return compile_model(target, model, config)


def _ran_on(named: str, executable: Executable) -> str:
    """`target 'x'`, with how much of the model it ran when not all of it."""
    plan = executable.plan
    if plan.whole_on_target:
        return named
    nodes = sum(len(segment.nodes) for segment in plan.segments)
    on_target = nodes - len(plan.unsupported)
    return f"{named} ({on_target} of {nodes} nodes; the rest on the reference path)"
