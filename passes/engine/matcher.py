"""Matching a declarative pattern at a node: first the structure, then the predicates.

`bindings` yields each way the op types and domains fit (two for an Add of two MatMuls, one per
input order); those are the sites. `match_binding` then checks, in order, that every inner
node's output is read by the pattern alone and each predicate in pattern order, and raises
`NoMatch` with the first failure, or gives the `Match`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import onnx_ir as oir

from passes.engine.match import Match
from passes.engine.patterns import (
    AnyValue,
    Const,
    OneOf,
    Op,
    OptionalInput,
    Scalar,
    ValuePattern,
    capture_names,
)
from passes.rewrite import NoMatch, constant_array, non_constant_reason, shared_output_reason


@dataclass(frozen=True)
class Check:
    """A predicate left for after the structure fits: `Op.check` on a node, or a `Const` or
    `Scalar` on an input value, which skip reasons call `subject`."""

    pattern: Op | Const | Scalar
    target: oir.Node | oir.Value
    subject: str = ""


@dataclass(frozen=True)
class Binding:
    """One way a pattern's structure fits: the matched nodes (each after the nodes it reads, the
    root last), the values they pass to each other, the captures, and the predicates in pattern
    order."""

    nodes: tuple[oir.Node, ...] = ()
    inner_values: tuple[oir.Value, ...] = ()
    captures: Mapping[str, oir.Node | oir.Value | None] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    def __add__(self, other: Binding) -> Binding:
        """Both parts (a node two sub-patterns matched, as in Mul(r, r), counts once)."""
        return Binding(
            tuple(dict.fromkeys(self.nodes + other.nodes)),
            tuple(dict.fromkeys(self.inner_values + other.inner_values)),
            {**self.captures, **other.captures},
            self.checks + other.checks,
        )


def bindings(pattern: Op, node: oir.Node) -> Iterator[Binding]:
    """Each way the structure of `pattern` fits with its root at `node`."""
    if not pattern.fits(node):
        return
    own = Binding(
        captures={pattern.capture: node} if pattern.capture else {},
        checks=(Check(pattern, node),) if pattern.check else (),
    )
    orders = [tuple(range(len(pattern.inputs)))]
    if pattern.commutes(node):
        orders.append((1, 0))
        orders.sort(key=lambda order: -_constants_in_place(pattern, node, order))
    for order in orders:
        pairs = zip(pattern.inputs, order, strict=True)
        per_input = [_bind_input(sub, node, index) for sub, index in pairs]
        for parts in itertools.product(*per_input):
            if not _captures_agree((own, *parts)):
                continue  # one name, one node or value: the x of x * x is read twice
            inputs = sum(parts, Binding())
            yield own + inputs + Binding(nodes=(node,))


def _captures_agree(parts: tuple[Binding, ...]) -> bool:
    """Whether every name the parts capture names the same node or value (or None) in each
    part that captures it, so that a capture written in two places of a pattern is one thing."""
    seen: dict[str, object] = {}
    return all(
        seen.setdefault(name, found) is found
        for part in parts
        for name, found in part.captures.items()
    )


def _constants_in_place(pattern: Op, node: oir.Node, order: tuple[int, ...]) -> int:
    """How many of `pattern`'s constant leaves the input `order` fills with constants. The order
    with more is tried first, so that Mul(c, x) against Mul(x, Scalar) is reported by what is
    wrong with c, not by x being no constant."""
    leaves = zip(pattern.inputs, order, strict=True)
    return sum(
        isinstance(sub, Const | Scalar) and constant_array(node.inputs[index]) is not None
        for sub, index in leaves
    )


def _bind_input(pattern: ValuePattern, node: oir.Node, index: int) -> list[Binding]:
    """The ways `pattern` fits input `index` of `node` (a list: `itertools.product` reuses it)."""
    value = node.inputs[index] if index < len(node.inputs) else None
    if isinstance(pattern, OptionalInput):
        if value is None:
            return [Binding(captures=dict.fromkeys(capture_names(pattern.pattern)))]
        pattern = pattern.pattern
    if isinstance(pattern, OneOf):
        return _bind_alternatives(pattern, node, index)
    if value is None:
        return []
    captures = {pattern.capture: value} if pattern.capture else {}
    if isinstance(pattern, AnyValue):
        return [Binding(captures=captures)]
    if isinstance(pattern, Const | Scalar):
        subject = (
            f"{node.op_type} {pattern.role}" if pattern.role else f"input {index} of {node.op_type}"
        )
        return [Binding(captures=captures, checks=(Check(pattern, value, subject),))]
    producer = value.producer()
    if producer is None or producer.graph is not node.graph:
        return []
    return [inner + Binding(inner_values=(value,)) for inner in bindings(pattern, producer)]


def _bind_alternatives(pattern: OneOf, node: oir.Node, index: int) -> list[Binding]:
    """The ways each alternative fits input `index` of `node`, in order; each captures None
    under the names only the other alternatives capture."""
    every_name = dict.fromkeys(capture_names(pattern))
    return [
        Binding(captures=every_name) + binding
        for alternative in pattern.alternatives
        for binding in _bind_input(alternative, node, index)
    ]


def match_binding(binding: Binding) -> Match:
    """The site as a `Match`, or NoMatch naming the first check it fails: an inner node's
    output read outside the pattern (or a graph output), then each predicate in order."""
    inside = set(binding.nodes)
    for value in binding.inner_values:
        if inside.issuperset(value.consumers()) and not value.is_graph_output():
            continue  # read by the pattern alone, maybe by several of its nodes (LayerNorm's d)
        reason = shared_output_reason(value)
        if reason is not None:
            raise NoMatch(reason)
    for check in binding.checks:
        reason = _failure(check)
        if reason is not None:
            raise NoMatch(reason)
    root = binding.nodes[-1]
    return Match(binding.nodes, (root.outputs[0],), binding.captures)


def _failure(check: Check) -> str | None:
    """Why `check` fails, or None."""
    pattern, target = check.pattern, check.target
    if isinstance(pattern, Op):
        assert isinstance(target, oir.Node) and pattern.check is not None
        return pattern.check(target)
    assert isinstance(target, oir.Value)
    named = f"{check.subject} '{target.name}'"
    array = constant_array(target)
    if array is None:
        return f"{named} {non_constant_reason(target)}"
    if isinstance(pattern, Scalar):
        if array.size != 1:
            return f"{named} has shape {list(array.shape)}, not one element"
        found = float(array.reshape(()))
        if not math.isclose(found, pattern.value, rel_tol=pattern.rel_tol):
            return f"{named} is {found:.6g}, not {pattern.value:.6g}"
        return None
    why = None if pattern.check is None else pattern.check(array)
    return None if why is None else f"{named} {why}"
