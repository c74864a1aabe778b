"""The declarative pattern language: what a rule's site looks like, written as data.

A pattern is a tree rooted at the node whose output the rewrite replaces. `Op` matches a node by
op type and domain and its inputs by sub-patterns; the leaves say what an input value must be:
anything (`AnyValue`), a constant (`Const`), a one-element constant near a number (`Scalar`), or
possibly absent (`OptionalInput`); `OneOf` lists alternatives for one input (a node that may be
missing from the chain: the scores, or the scores plus a mask). Two-input Add and Mul match
their inputs in either order. A capture name written in several places names one node or value
(the x of x * x * x, the d = x - mean(x) that LayerNorm squares and divides): where the places
hold different ones, the structure does not fit.

Matching has two parts, so that a skip record is written only where it says something: the
op types and domains (the structure) decide whether a node is a site at all; constants,
scalars and `Op.check` are predicates, and the first one that fails is the site's skip reason,
naming the sub-pattern ("input 1 of Add 'm' is computed by a MatMul node").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

# Ops whose two inputs may be swapped without changing the result.
COMMUTATIVE = frozenset({"Add", "Mul"})


@dataclass(frozen=True)
class AnyValue:
    """Any present input, captured under `capture` (when given) for the build."""

    capture: str = ""


@dataclass(frozen=True)
class Const:
    """An input whose contents are fixed (an initializer or a Constant node's output).

    `role` names it in skip reasons as "{op} {role}" ("Conv weight 'w' is a graph input");
    without one, by position ("input 1 of Add 'b' ..."). `check` looks at the contents and says
    why they do not fit, as the end of a sentence about the input ("has rank 3; Gemm needs
    2-D"), or None when they do."""

    capture: str = ""
    role: str = ""
    check: Callable[[np.ndarray], str | None] | None = None


@dataclass(frozen=True)
class Scalar:
    """A one-element constant within relative tolerance `rel_tol` of `value` (exporters write
    scalars as 0-d or [1] tensors, and round constants such as sqrt(2) differently)."""

    value: float
    rel_tol: float = 1e-4
    capture: str = ""
    role: str = ""


@dataclass(frozen=True)
class OptionalInput:
    """An input that may be missing or empty (Conv's bias); when present it must match
    `pattern`. An absent input is captured as None."""

    pattern: ValuePattern


@dataclass(frozen=True)
class Op:
    """The input is the output of a node of `op_type` (one name or a set) in `domain` (one or a
    set; "" is the default domain), in the same graph, whose first inputs match `inputs` (inputs
    past those listed are not looked at). `check` says why the node does not fit as a whole
    sentence ("BatchNormalization is in training mode"), or None; `capture` names the node for
    the build."""

    op_type: str | frozenset[str]
    inputs: tuple[ValuePattern, ...] = ()
    domain: str | frozenset[str] = ""
    capture: str = ""
    check: Callable[[oir.Node], str | None] | None = None

    def fits(self, node: oir.Node) -> bool:
        """Whether `node` has this pattern's op type and domain."""
        domain = "" if node.domain == "ai.onnx" else node.domain
        return _among(node.op_type, self.op_type) and _among(domain, self.domain)

    def commutes(self, node: oir.Node) -> bool:
        """Whether this pattern's two inputs may match `node`'s in either order."""
        two_inputs = len(self.inputs) == 2 and len(node.inputs) == 2
        return two_inputs and node.op_type in COMMUTATIVE and node.domain in ("", "ai.onnx")


def _among(name: str, allowed: str | frozenset[str]) -> bool:
    return name == allowed if isinstance(allowed, str) else name in allowed


@dataclass(frozen=True)
class OneOf:
    """The input matches one of `alternatives` (each way any of them fits is a site of its own,
    in this order), as in "Add(scores, mask), or the scores alone". The captures of the
    alternatives a site does not take are None there, as for an absent `OptionalInput`, so a
    build asks `match.value("mask") is None`."""

    alternatives: tuple[ValuePattern, ...]


ValuePattern = Op | AnyValue | Const | Scalar | OptionalInput | OneOf


def capture_names(pattern: ValuePattern) -> tuple[str, ...]:
    """Every name `pattern` and its sub-patterns capture under."""
    if isinstance(pattern, OptionalInput):
        return capture_names(pattern.pattern)
    if isinstance(pattern, OneOf):
        return tuple(name for sub in pattern.alternatives for name in capture_names(sub))
    own = (pattern.capture,) if pattern.capture else ()
    inputs = pattern.inputs if isinstance(pattern, Op) else ()
    return own + tuple(name for sub in inputs for name in capture_names(sub))
