"""Graph surgery shared by passes: find constants and sole consumers, swap a pattern for its
replacement, and record both sides in the pass's log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as oir

from ir.names import unique_name
from ir.node_ids import describe_node
from passes.base import PassLog


def constant_array(value: oir.Value | None) -> np.ndarray | None:
    """The value's contents when they are fixed: an initializer that is not a graph input, or
    the output of a Constant node with a `value` tensor. None otherwise."""
    if value is None:
        return None
    if value.is_initializer() and not value.is_graph_input() and value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and producer.domain == "":
        attribute = producer.attributes.get("value")
        if attribute is not None and attribute.type == oir.AttributeType.TENSOR:
            return attribute.as_tensor().numpy()
    return None


def sole_consumer(value: oir.Value) -> oir.Node | None:
    """The only node reading `value`, if exactly one does and it is not a graph output."""
    consumers = value.consumers()
    if len(consumers) != 1 or value.is_graph_output():
        return None
    return consumers[0]


def produced_by(value: oir.Value | None, op_type: str, domain: str = "") -> oir.Node | None:
    """The node producing `value` if it is an `op_type` node of `domain`."""
    if value is None:
        return None
    producer = value.producer()
    if producer is None or producer.op_type != op_type or producer.domain != domain:
        return None
    return producer


def broadcast_keeps_shape(shape: Sequence[int | oir.SymbolicDim], other: Sequence[int]) -> bool:
    """Whether broadcasting a tensor of `shape` with one of shape `other` leaves `shape` as it
    is (symbolic dims only meet 1s)."""
    if len(other) > len(shape):
        return False
    pairs = zip(reversed(list(other)), reversed(list(shape)), strict=False)
    return all(o == 1 or (isinstance(d, int) and o == d) for o, d in pairs)


def add_initializer(graph: oir.Graph, name: str, array: np.ndarray) -> oir.Value:
    """A new initializer under a name not yet used in the graph."""
    unique = unique_name(graph, name)
    value = oir.Value(name=unique, const_value=oir.tensor(array, name=unique))
    value.dtype = value.const_value.dtype
    value.shape = oir.Shape(array.shape)
    graph.register_initializer(value)
    return value


def replace_nodes(
    log: PassLog,
    old: Sequence[oir.Node],
    new: Sequence[oir.Node],
    outputs: Mapping[oir.Value, oir.Value],
    *,
    rule: str,
    reason: str,
) -> None:
    """Swap the matched nodes `old` for `new`, recording both.

    `new` goes right after the last of `old` (every outside input of the pattern is defined by
    then); each old output in `outputs` has its uses moved to its replacement, which takes over
    its name (so graph outputs keep their names); then `old` is removed. An old output still read
    outside the pattern and missing from `outputs` is a bug in the pass and raises.
    """
    graph = old[0].graph
    assert graph is not None, "pattern nodes must be in a graph"
    # Records list replaced ids in graph order; one walk, as graph.index walks the graph per call.
    position = {node: index for index, node in enumerate(graph)}
    old = sorted(old, key=position.__getitem__)
    last = old[-1]
    graph.insert_after(last, list(new))
    for old_value, new_value in outputs.items():
        name = old_value.name
        old_value.replace_all_uses_with(new_value, replace_graph_outputs=True)
        old_value.name = None
        new_value.name = name
        if new_value.type is None:
            new_value.type = old_value.type
        if new_value.shape is None:
            new_value.shape = old_value.shape
    for node in new:
        log.added(node, rule=rule, reason=reason, replaces=old)
    log.removed(old, rule=rule, reason=reason)
    graph.remove(old, safe=True)


def shared_output_reason(value: oir.Value) -> str | None:
    """Why node output `value` cannot disappear into a fusion with its reader ("MatMul output
    has 2 consumers"), or None when exactly one node reads it and it is not a graph output."""
    producer = value.producer()
    assert producer is not None, "a node output"
    if value.is_graph_output():
        return f"{producer.op_type} output is a graph output"
    count = len(value.consumers())
    return None if count == 1 else f"{producer.op_type} output has {count} consumers"


def non_constant_reason(value: oir.Value) -> str:
    """Why `constant_array` gives no array for `value`, as the end of a skip reason
    ("Conv weight 'w' is computed by a ConstantOfShape node (run fold-constants first)"); the
    hint appears when the producer reads only weights, so fold-constants can compute it."""
    if value.is_graph_input():
        if value.is_initializer():
            return "is a graph input with an initializer, so a caller may override it"
        return "is a graph input"
    producer = value.producer()
    if producer is None:
        return "has no known value"
    inputs = [v for v in producer.inputs if v is not None]
    if all(v.is_initializer() or constant_array(v) is not None for v in inputs):
        return f"is computed by a {producer.op_type} node (run fold-constants first)"
    return f"is computed by a {producer.op_type} node"


# Ops that draw fresh random numbers on every run.
RANDOM_OPS = frozenset(
    {
        "Bernoulli",
        "Multinomial",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
    }
)


def is_nondeterministic(node: oir.Node) -> bool:
    """Whether two runs of `node` on the same inputs may differ: a random op, or a Dropout whose
    training_mode is not a constant false. Folding or merging such a node would freeze or share
    what should be fresh random draws."""
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type in RANDOM_OPS:
        return True
    if node.op_type == "Dropout" and len(node.inputs) > 2 and node.inputs[2] is not None:
        training_mode = constant_array(node.inputs[2])
        return training_mode is None or bool(training_mode)
    return False


def output_handover_blocker(old: oir.Value, new: oir.Value) -> str | None:
    """Why `new` cannot take over graph output `old` under its name ("'x' is a graph input");
    None when it can, or when `old` is not a graph output."""
    if not old.is_graph_output():
        return None
    if new.is_graph_input():
        return f"'{new.name}' is a graph input"
    if new.is_graph_output():
        return f"'{new.name}' is already a graph output"
    if new.graph is not old.graph:
        return f"'{new.name}' comes from an enclosing graph"
    return None


def forward_uses(old: oir.Value, new: oir.Value) -> None:
    """Make every reader of `old` read `new`. A graph output keeps its name, so `new` takes it
    over; check `output_handover_blocker` first."""
    if not old.is_graph_output():
        old.replace_all_uses_with(new)
        return
    name = old.name
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    old.name = None
    new.name = name


class NoMatch(Exception):
    """A site a rule looked at and cannot rewrite; the message is the skip reason. Lets a matcher
    say why from deep inside, instead of passing None back up through every step."""


def default_opset(model: oir.Model) -> int:
    """The model's ai.onnx opset version (1 when it imports none, as ONNX assumes)."""
    opsets = model.opset_imports
    return opsets.get("", opsets.get("ai.onnx", 1))


def scalar_constant(value: oir.Value | None) -> float | None:
    """A one-element constant's value; exporters write scalars as 0-d or [1] tensors."""
    array = constant_array(value)
    if array is None or array.size != 1:
        return None
    return float(array.reshape(()))


def other_input(node: oir.Node, value: oir.Value | None) -> oir.Value | None:
    """The input of two-input `node` that is not `value` (`value` itself for node(value, value)),
    or None when `value` is not an input."""
    if len(node.inputs) != 2 or value is None:
        return None
    first, second = node.inputs
    if first is value:
        return second
    return first if second is value else None


def scalar_operand(node: oir.Node) -> tuple[oir.Value, float] | None:
    """(the other input, the constant) when one input of a commutative two-input node (Add, Mul)
    is a one-element constant; None otherwise."""
    if len(node.inputs) != 2:
        return None
    for constant, other in (node.inputs, reversed(node.inputs)):
        number = scalar_constant(constant)
        if number is not None and other is not None:
            return other, number
    return None


def consumer_of(value: oir.Value, op_type: str, domain: str = "") -> oir.Node | None:
    """The one `op_type` node reading `value`; None when there is none or several."""
    found = [node for node in value.consumers() if (node.op_type, node.domain) == (op_type, domain)]
    return found[0] if len(found) == 1 else None


def leaked_value_reason(nodes: Sequence[oir.Node], outputs: Sequence[oir.Value]) -> str | None:
    """Why the pattern `nodes` cannot be replaced as a whole: a value it computes, other than its
    `outputs`, is a graph output or is read outside it (the fusion would drop it), or the nodes
    lie in different graphs. None when it can."""
    inside = set(nodes)
    for node in nodes:
        if node.graph is not nodes[0].graph:
            return f"{describe_node(node)} lies in another graph than {describe_node(nodes[0])}"
        for value in node.outputs:
            if value in outputs:
                continue
            if value.is_graph_output():
                return f"intermediate value '{value.name}' is a graph output"
            outside = [reader for reader in value.consumers() if reader not in inside]
            if outside:
                reader = describe_node(outside[0])
                return f"intermediate value '{value.name}' is also read by {reader}"
    return None


def orphaned_producers(removed: Sequence[oir.Node]) -> tuple[oir.Node, ...]:
    """The nodes, beyond `removed`, that feed only `removed` (directly or through each other)
    and produce no graph output: the shape computations and shared tables a fusion leaves with
    no reader. Build the replacement nodes first: their reads keep what they use alive."""
    gone = set(removed)
    graph = removed[0].graph
    found: list[oir.Node] = []
    pending = [value for node in removed for value in node.inputs]
    while pending:
        value = pending.pop()
        node = None if value is None else value.producer()
        if node is None or node in gone or node.graph is not graph:
            continue
        if any(
            out.is_graph_output() or not gone.issuperset(out.consumers()) for out in node.outputs
        ):
            continue
        gone.add(node)
        found.append(node)
        pending.extend(node.inputs)
    return tuple(found)
