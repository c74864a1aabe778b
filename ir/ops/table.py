"""The registry behind `ir.ops`: records, lookup, per-node costs and the shape-fill pass.

Every rule looks at a node through `NodeShapes`, whose accessors return concrete ints or raise
`CostUnknown`. That keeps rules one-liners that never guess: a rule that needs a shape which is
missing or symbolic simply stops, and `node_cost` reports "no cost" (None) instead of a wrong
number. Bindings turn named symbolic dims ("batch") into ints for one query.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import onnx_ir as oir

DEFAULT_DOMAIN = ""
# Spellings of the default ONNX domain; entries are stored under DEFAULT_DOMAIN.
_DEFAULT_DOMAIN_ALIASES = frozenset({"", "ai.onnx"})


class CostUnknown(Exception):
    """A rule needs a shape, dtype or attribute that is missing or symbolic.

    Internal control flow, not a user error: `node_cost` turns it into None.
    """


@dataclass(frozen=True)
class Cost:
    """Work and traffic of one node: FLOPs (integer ops for integer kernels) and bytes moved."""

    flops: int
    bytes_moved: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes_moved + other.bytes_moved)

    def to_json(self) -> dict[str, int]:
        return {"flops": self.flops, "bytes_moved": self.bytes_moved}


# What a shape rule proposes for one output: its dtype and shape, either possibly unknown.
InferredOutput = tuple[oir.DataType | None, oir.Shape | None]


@dataclass(frozen=True)
class NodeShapes:
    """A node seen through concrete shapes; every accessor raises CostUnknown rather than guess."""

    node: oir.Node
    bindings: Mapping[str, int] = field(default_factory=dict)

    def _input(self, index: int) -> oir.Value:
        inputs = self.node.inputs
        value = inputs[index] if 0 <= index < len(inputs) else None
        if value is None:
            raise CostUnknown(f"input {index} is absent")
        return value

    def _output(self, index: int) -> oir.Value:
        outputs = self.node.outputs
        if not 0 <= index < len(outputs) or not _is_present(outputs[index]):
            raise CostUnknown(f"output {index} is absent")
        return outputs[index]

    def has_input(self, index: int) -> bool:
        inputs = self.node.inputs
        return 0 <= index < len(inputs) and inputs[index] is not None

    def present_inputs(self) -> int:
        """How many inputs are actually given (optional empty ones do not count)."""
        return sum(value is not None for value in self.node.inputs)

    def input_shape(self, index: int) -> tuple[int, ...]:
        return concrete_shape(self._input(index), self.bindings)

    def output_shape(self, index: int) -> tuple[int, ...]:
        return concrete_shape(self._output(index), self.bindings)

    def input_numel(self, index: int) -> int:
        return math.prod(self.input_shape(index))

    def output_numel(self, index: int) -> int:
        return math.prod(self.output_shape(index))

    def input_bytes(self, index: int) -> int:
        return tensor_bytes(self._input(index), self.bindings)

    def output_bytes(self, index: int) -> int:
        return tensor_bytes(self._output(index), self.bindings)

    def attr_int(self, name: str, default: int) -> int:
        return self.node.attributes.get_int(name, default)

    def attr_float(self, name: str, default: float) -> float:
        return self.node.attributes.get_float(name, default)

    def attr_str(self, name: str, default: str) -> str:
        return self.node.attributes.get_string(name, default)

    def attr_ints(self, name: str) -> tuple[int, ...] | None:
        values = self.node.attributes.get_ints(name, None)
        return None if values is None else tuple(values)


def _is_present(value: oir.Value | None) -> bool:
    """An output named "" is an optional output the node does not produce."""
    return value is not None and value.name != ""


def concrete_shape(value: oir.Value, bindings: Mapping[str, int]) -> tuple[int, ...]:
    """The value's shape as ints, resolving symbolic dims through bindings, or CostUnknown."""
    shape = value.shape
    if shape is None:
        raise CostUnknown(f"'{value.name}' has no shape")
    dims: list[int] = []
    for dim in shape.dims:
        if isinstance(dim, int):
            dims.append(dim)
        elif dim.value is not None and dim.value in bindings:
            dims.append(int(bindings[dim.value]))
        else:
            raise CostUnknown(f"'{value.name}' has symbolic dim {dim.value!r}")
    return tuple(dims)


def tensor_bytes(value: oir.Value, bindings: Mapping[str, int]) -> int:
    """Bytes of a dense tensor value, rounded up for sub-byte types; CostUnknown for strings."""
    dtype = value.dtype
    if dtype is None:
        raise CostUnknown(f"'{value.name}' has no dtype")
    try:
        bits = dtype.bitwidth
    except TypeError as error:  # STRING and other variable-size types
        raise CostUnknown(f"'{value.name}' has no fixed item size") from error
    return math.ceil(math.prod(concrete_shape(value, bindings)) * bits / 8)


FlopsRule = Callable[[NodeShapes], int]
BytesRule = Callable[[NodeShapes], int]
ShapeRule = Callable[[oir.Node], Sequence[InferredOutput | None]]


def io_bytes(view: NodeShapes) -> int:
    """Default traffic: every present input read once, every produced output written once."""
    node = view.node
    total = sum(view.input_bytes(i) for i, value in enumerate(node.inputs) if value is not None)
    return total + sum(
        view.output_bytes(i) for i, value in enumerate(node.outputs) if _is_present(value)
    )


def no_bytes(view: NodeShapes) -> int:
    """Views and metadata ops move nothing: a runtime aliases or folds them."""
    return 0


def no_flops(view: NodeShapes) -> int:
    return 0


def unknown_cost(view: NodeShapes) -> int:
    """For ops whose cost depends on subgraphs or data, which this table does not model."""
    raise CostUnknown(f"{view.node.op_type}: cost is not modelled")


def per_output_element(flops_per_element: int) -> FlopsRule:
    """`k` FLOPs for each element of output 0 (elementwise ops, activations, normalizations)."""

    def rule(view: NodeShapes) -> int:
        return flops_per_element * view.output_numel(0)

    return rule


def per_input_element(flops_per_element: int) -> FlopsRule:
    """`k` FLOPs for each element of input 0 (reductions read everything once)."""

    def rule(view: NodeShapes) -> int:
        return flops_per_element * view.input_numel(0)

    return rule


@dataclass(frozen=True)
class OpSemantics:
    """Everything the toolkit knows about one operator, kept in one place.

    `flops` and `bytes_moved` take a `NodeShapes` and may raise CostUnknown. `infer_output_shapes`
    (optional) proposes a dtype and shape per output for ops ONNX shape inference cannot handle;
    it may return None for any output it cannot work out. `formula` says in words how the FLOPs
    are counted, for docs and `runner ir show`.
    """

    domain: str
    op_type: str
    category: str
    flops: FlopsRule
    bytes_moved: BytesRule = io_bytes
    infer_output_shapes: ShapeRule | None = None
    formula: str = ""

    def cost(self, node: oir.Node, bindings: Mapping[str, int] | None = None) -> Cost | None:
        view = NodeShapes(node, bindings or {})
        try:
            return Cost(int(self.flops(view)), int(self.bytes_moved(view)))
        except CostUnknown:
            return None


_REGISTRY: dict[tuple[str, str], OpSemantics] = {}


def _canonical_domain(domain: str) -> str:
    return DEFAULT_DOMAIN if domain in _DEFAULT_DOMAIN_ALIASES else domain


def register(entry: OpSemantics) -> OpSemantics:
    """Add one entry; an op defined twice is a bug in the table, so it raises."""
    key = (_canonical_domain(entry.domain), entry.op_type)
    if key in _REGISTRY:
        raise ValueError(f"op semantics for {key[0] or 'ai.onnx'}::{key[1]} registered twice")
    _REGISTRY[key] = entry
    return entry


def define(
    op_types: str | Iterable[str],
    category: str,
    flops: FlopsRule,
    *,
    domain: str = DEFAULT_DOMAIN,
    bytes_moved: BytesRule = io_bytes,
    shapes: ShapeRule | None = None,
    formula: str = "",
) -> None:
    """Register one entry per op type for ops that share every rule."""
    names = [op_types] if isinstance(op_types, str) else list(op_types)
    for op_type in names:
        register(
            OpSemantics(
                domain=_canonical_domain(domain),
                op_type=op_type,
                category=category,
                flops=flops,
                bytes_moved=bytes_moved,
                infer_output_shapes=shapes,
                formula=formula,
            )
        )


def lookup(domain: str, op_type: str) -> OpSemantics | None:
    """The entry for an op, or None; "" and "ai.onnx" name the same domain."""
    return _REGISTRY.get((_canonical_domain(domain), op_type))


def registered_ops() -> list[OpSemantics]:
    """All entries, sorted by domain then op type."""
    return [_REGISTRY[key] for key in sorted(_REGISTRY)]


def node_cost(node: oir.Node, bindings: Mapping[str, int] | None = None) -> Cost | None:
    """FLOPs and bytes of one node, or None when the op is unknown or a needed shape is not."""
    entry = lookup(node.domain, node.op_type)
    return None if entry is None else entry.cost(node, bindings)


def infer_missing_shapes(model: oir.Model) -> int:
    """Fill dtype/shape that ONNX inference left empty, using the table's shape rules.

    Runs in graph order over every graph, so a filled output feeds the rules of its consumers
    (FusedMatMul -> Add -> Gelu all get shapes). Never overwrites what is already known. Returns
    how many values gained a dtype or a shape.
    """
    filled = 0
    for graph in model.graphs():
        for node in graph:
            missing = [
                value
                for value in node.outputs
                if _is_present(value) and (value.dtype is None or value.shape is None)
            ]
            if not missing:
                continue
            entry = lookup(node.domain, node.op_type)
            if entry is None or entry.infer_output_shapes is None:
                continue
            proposals = entry.infer_output_shapes(node)
            for value, proposal in zip(node.outputs, proposals, strict=False):
                if proposal is None or not _is_present(value):
                    continue
                filled += _apply(value, *proposal)
    return filled


def _apply(value: oir.Value, dtype: oir.DataType | None, shape: oir.Shape | None) -> bool:
    changed = False
    if value.dtype is None and dtype is not None:
        value.dtype = dtype
        changed = True
    if value.shape is None and shape is not None:
        value.shape = shape
        changed = True
    return changed
