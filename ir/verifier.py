"""Invariants of the IR, checked after loading and after every pass.

onnx_ir links values to nodes by object, so an edit can leave a graph that still runs in Python but
no longer serializes to valid ONNX (two values with one name, a use of a removed node's output,
nodes out of order). `verify` finds such breakage and names the node that shows it, by its stable
id, so a pass that broke the graph can be found from the audit log.

Rules, in the order violations are reported:

- `duplicate-id`: two nodes carry the same stable id.
- `ssa`: a value name is defined twice in one graph, a subgraph node output reuses a name visible
  from an enclosing graph (ONNX forbids that shadowing), or a node output's producer is not the
  node that lists it.
- `dangling-use`: a node input or graph output is not defined in its graph or an enclosing one.
- `cycle`: nodes depend on each other in a loop.
- `topological-order`: a node reads a value before the node that defines it (without a cycle).
- `type-mismatch`: a default-domain node's types break its ONNX schema, or an initializer's
  declared type or shape differs from its tensor.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import networkx as nx
import onnx
import onnx_ir as oir

from ir.errors import VerificationError
from ir.graph_view import captured_values, local_values, subgraphs_of, to_networkx
from ir.node_ids import NODE_ID_KEY, describe_node, node_id

RULES = ("duplicate-id", "ssa", "dangling-use", "cycle", "topological-order", "type-mismatch")
_RULE_RANK = {rule: rank for rank, rule in enumerate(RULES)}
_VARIADIC = onnx.defs.OpSchema.FormalParameterOption.Variadic


@dataclass(frozen=True)
class Violation:
    """One broken invariant; `node` is the offending node's stable id (None: graph-level)."""

    rule: str
    node: str | None
    message: str

    def to_json(self) -> dict[str, str | None]:
        return {"rule": self.rule, "node": self.node, "message": self.message}


def verify(model: oir.Model) -> list[Violation]:
    """Every violation in the main graph and all subgraphs, ordered by rule, then graph order."""
    opsets = model.opset_imports
    version = opsets.get("", opsets.get("ai.onnx", 1))
    functions = frozenset((function.domain, function.name) for function in model.functions.values())
    found = _duplicate_ids(model.graph.all_nodes())
    checker = _GraphChecker(functions, found)
    checker.check(model.graph, enclosing=(), outer_names=frozenset(), opset_version=version)
    return sorted(found, key=lambda violation: _RULE_RANK[violation.rule])


def check(model: oir.Model) -> None:
    """Raise VerificationError naming the first violation, if there is any."""
    violations = verify(model)
    if violations:
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise VerificationError(f"{first.rule}: {first.message}{more}")


def _duplicate_ids(nodes: Iterable[oir.Node]) -> list[Violation]:
    owners: dict[str, list[oir.Node]] = {}
    for node in nodes:
        ident = node.metadata_props.get(NODE_ID_KEY)
        if ident is not None:
            owners.setdefault(ident, []).append(node)
    return [
        Violation(
            "duplicate-id",
            ident,
            f"id {ident} is carried by {len(same)} nodes: "
            + ", ".join(describe_node(node) for node in same),
        )
        for ident, same in owners.items()
        if len(same) > 1
    ]


def _value_name(value: oir.Value) -> str:
    return f"'{value.name}'" if value.name else "an unnamed value"


def _graph_name(graph: oir.Graph) -> str:
    return f"graph '{graph.name}'" if graph.name else "an unnamed graph"


class _GraphChecker:
    """Walks a graph and its subgraphs, appending violations of the per-graph rules."""

    def __init__(self, functions: frozenset[tuple[str, str]], found: list[Violation]) -> None:
        self._functions = functions
        self._found = found

    def _add(self, rule: str, node: oir.Node | None, message: str) -> None:
        self._found.append(Violation(rule, None if node is None else node_id(node), message))

    def check(
        self,
        graph: oir.Graph,
        *,
        enclosing: tuple[set[oir.Value], ...],
        outer_names: frozenset[str],
        opset_version: int,
    ) -> None:
        """Check one graph; `enclosing` and `outer_names` are what its enclosing graphs define."""
        local = local_values(graph)
        names = self._check_ssa(graph, outer_names)
        visible = (local, *enclosing)
        self._check_uses(graph, visible)
        cyclic = self._check_cycles(graph)
        self._check_order(graph, cyclic)
        opset_version = graph.opset_imports.get("", opset_version)
        self._check_initializers(graph)
        for node in graph:
            if node.domain == "" and (node.domain, node.op_type) not in self._functions:
                self._check_types(node, node.version or opset_version)
        inner_names = outer_names | names
        for node in graph:
            for subgraph in subgraphs_of(node):
                self.check(
                    subgraph,
                    enclosing=visible,
                    outer_names=inner_names,
                    opset_version=opset_version,
                )

    def _check_ssa(self, graph: oir.Graph, outer_names: frozenset[str]) -> frozenset[str]:
        """Check single assignment and return the names the graph defines."""
        defined: dict[str, tuple[oir.Value, oir.Node | None]] = {}

        def define(value: oir.Value, node: oir.Node | None, what: str) -> None:
            if not value.name:
                return  # an omitted optional output
            earlier = defined.get(value.name)
            if earlier is None:
                defined[value.name] = (value, node)
                if node is not None and value.name in outer_names:
                    self._add(
                        "ssa",
                        node,
                        f"{describe_node(node)} in {_graph_name(graph)} defines "
                        f"{_value_name(value)}, which shadows a value of an enclosing graph",
                    )
                return
            if earlier[0] is value:
                return  # a graph input that is also an initializer (its default)
            first = (
                "a graph input or initializer" if earlier[1] is None else describe_node(earlier[1])
            )
            where = describe_node(node) if node is not None else f"{_graph_name(graph)} {what}"
            self._add(
                "ssa",
                node,
                f"{where} defines {_value_name(value)}, which {first} already defines",
            )

        for value in graph.inputs:
            define(value, None, "input")
        for value in graph.initializers.values():
            define(value, None, "initializer")
        for node in graph:
            for index, value in enumerate(node.outputs):
                if value.producer() is not node or value.index() != index:
                    self._add(
                        "ssa",
                        node,
                        f"{describe_node(node)} lists {_value_name(value)} as output {index}, "
                        f"but the value says its producer is {_producer_text(value)}",
                    )
                define(value, node, "node output")
        return frozenset(defined)

    def _check_uses(self, graph: oir.Graph, visible: Sequence[set[oir.Value]]) -> None:
        def is_visible(value: oir.Value) -> bool:
            return any(value in scope for scope in visible)

        for node in graph:
            for value in dict.fromkeys(node.inputs):
                if value is not None and not is_visible(value):
                    self._add(
                        "dangling-use",
                        node,
                        f"{describe_node(node)} reads {_value_name(value)}, which is not "
                        f"defined in {_graph_name(graph)} or an enclosing graph "
                        f"({_origin_text(value)})",
                    )
        for value in graph.outputs:
            if not is_visible(value):
                self._add(
                    "dangling-use",
                    None,
                    f"{_graph_name(graph)} outputs {_value_name(value)}, which it does not "
                    f"define ({_origin_text(value)})",
                )

    def _check_cycles(self, graph: oir.Graph) -> set[oir.Node]:
        """Report each dependency cycle once; return the nodes that lie on cycles."""
        view = to_networkx(graph)
        position = {node: index for index, node in enumerate(graph)}
        on_cycles: set[oir.Node] = set()
        components = []
        for keys in nx.strongly_connected_components(view):
            first = min(keys, key=lambda key: position[view.nodes[key]["ir_node"]])
            if len(keys) > 1 or view.has_edge(first, first):
                components.append((position[view.nodes[first]["ir_node"]], first, keys))
        for _, first, keys in sorted(components, key=lambda item: item[0]):
            component = view.subgraph(keys)
            paths = nx.single_source_shortest_path(component, first)
            back = min(component.predecessors(first), key=lambda key: (len(paths[key]), key))
            ring = " -> ".join([*paths[back], first])
            node = view.nodes[first]["ir_node"]
            on_cycles.update(view.nodes[key]["ir_node"] for key in keys)
            self._add("cycle", node, f"{describe_node(node)} is on a dependency cycle: {ring}")
        return on_cycles

    def _check_order(self, graph: oir.Graph, on_cycles: set[oir.Node]) -> None:
        """Report reads that come before the definition; reads along a cycle are the cycle's."""
        position = {node: index for index, node in enumerate(graph)}
        for index, node in enumerate(graph):
            direct = [value for value in node.inputs if value is not None]
            captured = captured_values(node)
            for value in dict.fromkeys([*direct, *captured]):
                producer = value.producer()
                if producer not in position or position[producer] < index:
                    continue
                if node in on_cycles and producer in on_cycles:
                    continue
                how = "reads" if value in direct else "reads (inside its subgraph)"
                self._add(
                    "topological-order",
                    node,
                    f"{describe_node(node)} at position {index} {how} {_value_name(value)} "
                    f"before {describe_node(producer)} defines it at position "
                    f"{position[producer]}",
                )

    def _check_initializers(self, graph: oir.Graph) -> None:
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is None:
                continue
            dtype_clash = value.dtype not in (None, oir.DataType.UNDEFINED, tensor.dtype)
            if dtype_clash or not _shapes_agree(value.shape, tensor.shape):
                self._add(
                    "type-mismatch",
                    None,
                    f"initializer {_value_name(value)} in {_graph_name(graph)} is declared "
                    f"{_describe_type(value.dtype, value.shape)} but its tensor is "
                    f"{_describe_type(tensor.dtype, tensor.shape)}",
                )

    def _check_types(self, node: oir.Node, opset_version: int) -> None:
        signature = _signature(node.op_type, opset_version)
        if signature is None:
            return
        bound: dict[str, tuple[str, str]] = {}  # type parameter -> (first value, its type)
        reported: set[str] = set()
        for side, params, values in (
            ("input", signature.inputs, node.inputs),
            ("output", signature.outputs, node.outputs),
        ):
            for param, value in _bind(params, values):
                text = _type_text(value.type)
                if text is None:
                    continue
                label = f"{side} {_value_name(value)}"
                allowed = signature.constraints.get(param.type_str, frozenset({param.type_str}))
                if text not in allowed:
                    self._add(
                        "type-mismatch",
                        node,
                        f"{describe_node(node)}: {label} is {text}, which {node.op_type} "
                        f"(opset {opset_version}) does not allow for {param.type_str}",
                    )
                    continue
                if param.type_str not in signature.constraints or not param.homogeneous:
                    continue
                first = bound.setdefault(param.type_str, (label, text))
                if first[1] != text and param.type_str not in reported:
                    reported.add(param.type_str)
                    self._add(
                        "type-mismatch",
                        node,
                        f"{describe_node(node)}: {label} is {text} but {first[0]} is {first[1]}; "
                        f"both are type {param.type_str}",
                    )


@dataclass(frozen=True)
class _Param:
    type_str: str
    variadic: bool
    homogeneous: bool


@dataclass(frozen=True)
class _Signature:
    """What the type rule needs from an ONNX schema, extracted once per (op, version)."""

    inputs: tuple[_Param, ...]
    outputs: tuple[_Param, ...]
    constraints: dict[str, frozenset[str]]


@functools.cache
def _signature(op_type: str, opset_version: int) -> _Signature | None:
    try:
        schema = onnx.defs.get_schema(op_type, opset_version, "")
    except onnx.defs.SchemaError:
        return None

    def params(formals: Sequence[onnx.defs.OpSchema.FormalParameter]) -> tuple[_Param, ...]:
        return tuple(
            _Param(
                formal.type_str,
                formal.option == _VARIADIC,
                # a heterogeneous variadic (Loop's V) lets each value have its own type
                formal.option != _VARIADIC or formal.is_homogeneous,
            )
            for formal in formals
        )

    return _Signature(
        params(schema.inputs),
        params(schema.outputs),
        {
            constraint.type_param_str: frozenset(constraint.allowed_type_strs)
            for constraint in schema.type_constraints
        },
    )


def _bind(
    params: Sequence[_Param], values: Sequence[oir.Value | None]
) -> Iterable[tuple[_Param, oir.Value]]:
    """Pair actual values with formal parameters; a trailing variadic takes the rest."""
    for index, value in enumerate(values):
        if index < len(params):
            param = params[index]
        elif params and params[-1].variadic:
            param = params[-1]
        else:
            return  # more values than the schema has: arity is not this rule's business
        if value is not None and value.name != "":
            yield param, value


def _type_text(type_: oir.TypeProtocol | None) -> str | None:
    """The ONNX type string ("tensor(float)", "seq(tensor(int64))"), or None if not known."""
    if type_ is None:
        return None
    if isinstance(type_, oir.SequenceType | oir.OptionalType):
        inner = _type_text(type_.elem_type)
        if inner is None:
            return None
        return f"seq({inner})" if isinstance(type_, oir.SequenceType) else f"optional({inner})"
    dtype = type_.dtype
    if dtype is None or dtype == oir.DataType.UNDEFINED:
        return None
    kind = "sparse_tensor" if isinstance(type_, oir.SparseTensorType) else "tensor"
    return f"{kind}({dtype.name.lower()})"


def _shapes_agree(declared: oir.Shape | None, actual: oir.Shape) -> bool:
    if declared is None:
        return True
    if len(declared) != len(actual):
        return False
    return all(
        not isinstance(want, int) or not isinstance(have, int) or want == have
        for want, have in zip(declared, actual, strict=True)
    )


def _describe_type(dtype: oir.DataType | None, shape: oir.Shape | None) -> str:
    dtype_text = "?" if dtype is None else dtype.name
    shape_text = "[?]" if shape is None else f"[{','.join(str(dim) for dim in shape)}]"
    return f"{dtype_text}{shape_text}"


def _producer_text(value: oir.Value) -> str:
    producer = value.producer()
    return "nothing" if producer is None else describe_node(producer)


def _origin_text(value: oir.Value) -> str:
    """Why a value is out of scope, as far as the value itself can tell."""
    producer = value.producer()
    if producer is None:
        if value.graph is None:
            return "it belongs to no graph"
        return f"it is an input or initializer of {_graph_name(value.graph)}"
    if producer.graph is None:
        return f"its producer {describe_node(producer)} was removed from the graph"
    return f"its producer {describe_node(producer)} is in {_graph_name(producer.graph)}"
