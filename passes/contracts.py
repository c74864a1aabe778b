"""Pass contracts: the facts about a model that a pass relies on, as data.

A pass declares the properties it `requires`, `provides` and `invalidates` (class attributes of
`passes.base.Pass`); the manager checks a pipeline against them before any pass runs
(`passes.contract_check`). A property names the pass that makes it true, so a pipeline in the
wrong order is refused with the fix, and says how to tell whether a model already has it, so a
model that needs no preparation needs no prerequisite pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import onnx_ir as oir

from ir.graph_view import subgraphs_of
from passes.rewrite import is_nondeterministic

# The first IR version in which an initializer need not also be a graph input.
CONSTANT_INITIALIZERS_IR_VERSION = 4


@dataclass(frozen=True)
class Property:
    """A fact about a model. `description` completes "pass 'x' needs ..."; `provided_by` is the
    pass that makes it true; `holds` tells whether a model already has it. Properties compare by
    name."""

    name: str
    description: str
    provided_by: str
    holds: Callable[[oir.Model], bool] = field(compare=False, repr=False)


def weights_are_constants(model: oir.Model) -> bool:
    """Whether every value computable from constants alone already is a constant: no node (but a
    Constant) reads only initializers and Constant outputs, and no IR<4 weight is listed as a
    graph input. Passes that read weights (`constant_array`) then see every one of them."""
    if model.ir_version < CONSTANT_INITIALIZERS_IR_VERSION and any(
        value.is_initializer() for value in model.graph.inputs
    ):
        return False
    return not any(_reads_only_constants(node) for node in model.graph.all_nodes())


def _reads_only_constants(node: oir.Node) -> bool:
    """A node fold-constants would evaluate (short of the size limit it may refuse it for)."""
    if node.domain in ("", "ai.onnx") and node.op_type == "Constant":
        return False
    if is_nondeterministic(node) or any(subgraphs_of(node)):
        return False
    return all(value is None or _is_constant(value) for value in node.inputs)


def _is_constant(value: oir.Value) -> bool:
    """Fixed without reading its contents: an initializer no caller may override, or the output
    of a Constant node."""
    if value.is_initializer() and not value.is_graph_input():
        return True
    producer = value.producer()
    return producer is not None and producer.domain == "" and producer.op_type == "Constant"


CONSTANT_WEIGHTS = Property(
    name="constant-weights",
    description="constant weights",
    provided_by="fold-constants",
    holds=weights_are_constants,
)
