"""Claims a target withdraws after ONNX's node tests showed them failing (docs/conformance.md):
a node matching a rule is not claimed, so it falls back to the reference path instead of
giving wrong numbers. Rules are data: (op type, condition on the node, reason)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # the rules are data in target modules, which must import cheaply
    import onnx_ir as oir

FailureRule: TypeAlias = "tuple[str, Callable[[oir.Node], bool], str]"


def always(node: oir.Node) -> bool:
    return True


def attribute(node: oir.Node, name: str, default: object) -> object:
    found = node.attributes.get(name)
    return default if found is None else found.value


def input_count(node: oir.Node) -> int:
    return sum(value is not None for value in node.inputs)


def used_outputs(node: oir.Node) -> int:
    """How many outputs are read or returned (optional outputs left empty do not count)."""
    return sum(1 for v in node.outputs if v.name and (v.consumers() or v.is_graph_output()))


def known_failure(node: oir.Node, rules: Sequence[FailureRule]) -> str | None:
    if node.domain not in ("", "ai.onnx"):
        return None
    for op, matches, reason in rules:
        if node.op_type == op and matches(node):
            return reason
    return None
