"""Values of a graph's shape computations, evaluated from static shapes, for shape inference to
read as constants.

ONNX's data propagation stops at some ops: in BERT as torch exports it, the position ids are
`Slice(table, 0, Shape(input_ids)[1])`, whose output ONNX leaves as `[unk, unk]` even when every
input dim is known, so every activation after it stays symbolic. Evaluating the small values
that derive from static shapes (onnx's reference evaluator, on zero-strided arrays for `Shape`)
and handing them back as constants settles those shapes.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

# Ops evaluated on shape values: their outputs stay as small as their inputs (Reshape keeps the
# element count, broadcasting multiplies small sizes, bounded by _MAX_EVALUATED_ELEMENTS). Ops
# that allocate what a value asks for (ConstantOfShape, Expand, Tile, Range) are left out, so a
# dim of 2**40 allocates nothing.
_SHAPE_ARITHMETIC = frozenset(
    {
        "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity",
        "Reshape", "Add", "Sub", "Mul", "Div", "Neg", "Max", "Min", "Equal", "Where",
        "ReduceProd", "Floor", "Ceil",
    }
)  # fmt: skip
_MAX_EVALUATED_ELEMENTS = 2**20


def static_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """The values of the (main) graph whose tensor shape is fully known."""
    shapes = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = info.type.tensor_type
        if not info.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if all(dim.HasField("dim_value") for dim in dims):
            shapes[info.name] = tuple(dim.dim_value for dim in dims)
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    return shapes


def all_static(graph: onnx.GraphProto, shapes: dict[str, tuple[int, ...]]) -> bool:
    """Every tensor output of the main graph's nodes has a fully known shape."""
    non_tensors = {
        info.name
        for info in [*graph.value_info, *graph.output]
        if not info.type.HasField("tensor_type")
    }
    return all(
        name in shapes or name in non_tensors for node in graph.node for name in node.output if name
    )


def shape_values(
    skeleton: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], max_elements: int
) -> dict[str, np.ndarray]:
    """The values, in graph order, of the main graph's shape computations that start at a
    `Shape` of a static tensor, through `_SHAPE_ARITHMETIC` ops on small inputs; values of more
    than `max_elements` are left out."""
    graph = skeleton.graph
    nodes = [node for node in graph.node if node.domain in ("", "ai.onnx")]
    if not any(node.op_type == "Shape" and node.input[0] in shapes for node in nodes):
        return {}  # nothing to start from: the common case of a symbolic batch
    from onnx.reference import ReferenceEvaluator  # imported only by models that need it

    opsets = {entry.domain: entry.version for entry in skeleton.opset_import}
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    constant_nodes = {node.output[0]: node for node in nodes if node.op_type == "Constant"}
    derived: dict[str, np.ndarray] = {}

    def evaluate(node: onnx.NodeProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | None:
        try:
            with np.errstate(all="ignore"):
                return ReferenceEvaluator(node, opsets=opsets).run(None, feeds)
        except Exception:  # a node that cannot run leaves its chain unsettled, as before
            return None

    def known(name: str) -> np.ndarray | None:
        if name in derived or name in constants:
            return derived.get(name, constants.get(name))
        if name in constant_nodes:  # evaluated once, when a shape computation reads it
            outputs = evaluate(constant_nodes.pop(name), {})
            if outputs is not None:
                constants[name] = np.asarray(outputs[0])
        return constants.get(name)

    for node in nodes:
        if node.op_type == "Shape":
            dims = shapes.get(node.input[0])
            if dims is None:
                continue
            # A zero-strided array: the shape without the bytes.
            feeds = {node.input[0]: np.broadcast_to(np.int8(0), dims)}
        elif node.op_type in _SHAPE_ARITHMETIC:
            names = [name for name in node.input if name]
            if not any(name in derived for name in names):
                continue
            values = {name: known(name) for name in names}
            feeds = {name: value for name, value in values.items() if value is not None}
            # All inputs known, and few enough elements that broadcasting (or Gather) of them
            # stays small.
            if len(feeds) < len(names) or (
                math.prod(max(value.size, 1) for value in feeds.values()) > _MAX_EVALUATED_ELEMENTS
            ):
                continue
        else:
            continue
        outputs = evaluate(node, feeds)
        for name, value in zip(node.output, outputs or (), strict=False):
            value = np.asarray(value)
            if name and value.size <= max_elements:
                derived[name] = value
    return derived


def with_constants(skeleton: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """`skeleton` with the nodes whose every output is in `values` replaced by initializers."""
    settled = onnx.ModelProto()
    settled.CopyFrom(skeleton)
    graph = settled.graph
    kept = []
    for node in graph.node:
        outputs = [name for name in node.output if name]
        if outputs and all(name in values for name in outputs):
            for name in outputs:
                graph.initializer.append(onnx.numpy_helper.from_array(values[name], name))
                if settled.ir_version < 4:  # before IR 4 every initializer is also an input
                    graph.input.append(
                        onnx.helper.make_tensor_value_info(
                            name,
                            onnx.helper.np_dtype_to_tensor_dtype(values[name].dtype),
                            values[name].shape,
                        )
                    )
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return settled
