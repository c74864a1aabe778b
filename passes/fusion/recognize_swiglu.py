"""recognize-swiglu: the SwiGLU gate of a decoder MLP, SiLU(gate) * up, found and recorded at
every site; fused only where the target declares a kernel for it.

Llama-style MLPs compute down(SiLU(gate(x)) * up(x)), and exporters write SiLU as its
arithmetic, gate * Sigmoid(gate), so a site is three nodes:

    Mul(Mul(gate, Sigmoid(gate)), up)            (each Mul's operands in either order)

ONNX defines the fused forms as functions: `SwiGLU(gate, up)` (opset 28) for the whole gate, and
`Swish(gate)` (opset 24) for the activation, which leaves Mul(Swish(gate), up). A function is a
fusion only for a runtime with a kernel of its own: one without expands the body back at load
time, into more nodes than the site had (docs/passes.md shows a CPU runtime that expands Swish
into Cast, Mul, Sigmoid, Mul, which also hides the site from that runtime's own fusion of
x * Sigmoid(x), and cannot expand SwiGLU at all). So the rule emits SwiGLU, else
Swish, only where the target declares it as a fused op; everywhere else, with no target
included, each site is recorded as a skip that says why, and the graph is left as it is.

The onnx_ir graph has no annotations beyond node metadata, which the toolkit keeps for node ids;
the audit's skip records are where recognized sites are listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from passes.engine.match import Match
from passes.engine.patterns import AnyValue, Op
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Emits, Rewrite, RewriteContext, Rule
from passes.rewrite import NoMatch
from passes.target_capabilities import TargetedPassConfig

RULE = "swiglu"
# Swish's and SwiGLU's alpha for SiLU: x * Sigmoid(1 * x).
_SILU_ALPHA = 1.0

GATE = AnyValue("gate")
SWIGLU = Op("Mul", (Op("Mul", (GATE, Op("Sigmoid", (GATE,)))), AnyValue("up")))


@dataclass(frozen=True)
class RecognizeSwiGluConfig(TargetedPassConfig):
    """Only `target`: whose declarations decide whether a site is fused."""


def _check_declared(context: RewriteContext, gate: oir.Value) -> None:
    """NoMatch unless the granted op is one the target declares, for the gate's element type."""
    assert context.emits is not None, "the rule requires an op"
    op = context.emits.op_type
    declared = context.declaration
    if declared is None:
        who = (
            f"target '{context.target}' declares no {op} kernel"
            if context.target
            else f"no target is given to declare a {op} kernel (target=NAME)"
        )
        raise NoMatch(
            f"{who}; ONNX's {op} is a function, which a runtime without a kernel expands "
            "into more nodes than the site has"
        )
    dtype = None if gate.dtype is None else np.dtype(gate.dtype.numpy()).name
    if dtype not in declared.dtypes:
        raise NoMatch(
            f"target '{context.target}' declares {declared.qualified_name} for "
            f"{', '.join(sorted(declared.dtypes))}, not {dtype or 'an unknown type'}"
        )


def _fuse(match: Match, context: RewriteContext) -> Rewrite:
    """SwiGLU(gate, up), or Mul(Swish(gate), up): whichever the target declares."""
    gate, up = match.value("gate"), match.value("up")
    assert gate is not None and up is not None, "both are inputs"
    _check_declared(context, gate)
    assert context.emits is not None, "the rule requires an op"
    op = context.emits.op_type
    attributes = {"alpha": _SILU_ALPHA}
    if op == "SwiGLU":
        if gate.shape is None or gate.shape != up.shape:
            raise NoMatch(
                f"SwiGLU does not broadcast: gate '{gate.name}' and up '{up.name}' are not "
                "known to have one shape"
            )
        fused: tuple[oir.Node, ...] = (oir.node("SwiGLU", [gate, up], attributes),)
        what = "the gated SiLU"
    else:
        swish = oir.node("Swish", [gate], attributes)
        fused = (swish, oir.node("Mul", [swish.outputs[0], up]))
        what = "the SiLU"
    return Rewrite(
        fused,
        {match.root.outputs[0]: fused[-1].outputs[0]},
        f"{len(match.nodes)} nodes compute SiLU('{gate.name}') * '{up.name}'; {op} computes {what}",
    )


class RecognizeSwiGlu(RuleSetPass):
    """Find the SwiGLU gates of decoder MLPs; fuse them for a target with a kernel for them."""

    name = "recognize-swiglu"
    summary = (
        "record each SwiGLU gate (gate * Sigmoid(gate) * up); replace it by SwiGLU or Swish "
        "where the target declares one"
    )
    config_type = RecognizeSwiGluConfig
    rules = (Rule(RULE, SWIGLU, _fuse, requires=(Emits("SwiGLU"), Emits("Swish"))),)
