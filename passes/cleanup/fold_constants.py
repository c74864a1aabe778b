"""fold-constants: compute at compile time what does not depend on the model's inputs.

Weights built by ops (ConstantOfShape fills, a Transpose of a weight), Constant nodes and shape
arithmetic on static shapes (Shape -> Gather -> Concat -> Reshape) become initializers, so later
passes see plain constants and no target spends run time recomputing them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as oir
from onnx.reference import ReferenceEvaluator

from ir.errors import first_line
from ir.graph_view import subgraphs_of
from ir.node_ids import describe_node
from ir.ops import infer_missing_shapes
from ir.reference import run_reference
from ir.shape_inference import infer_value_types
from passes.base import Pass, PassConfig, PassLog
from passes.contracts import CONSTANT_INITIALIZERS_IR_VERSION, CONSTANT_WEIGHTS
from passes.option_range import bounded
from passes.rewrite import add_initializer, is_nondeterministic

_MAX_ROUNDS = 64  # a bound, not a target: rounds stop when one folds nothing


@dataclass(frozen=True)
class FoldConstantsConfig(PassConfig):
    """`max_elements`: the largest output a fold may store (folding trades compute for size).
    `overridable_initializers`: keep the initializers that an IR<4 model lists as graph inputs as
    inputs a caller may replace at run time; they are then not constants."""

    max_elements: int = bounded(2**24, low=1)
    overridable_initializers: bool = False


class _NotEvaluable(Exception):
    """Neither runtime could evaluate a node; the message gives each one's error."""


class FoldConstants(Pass):
    name = "fold-constants"
    summary = "evaluate nodes whose inputs are all constant and store their outputs as weights"
    config_type = FoldConstantsConfig
    provides = (CONSTANT_WEIGHTS,)

    def run(self, model: oir.Model, log: PassLog) -> None:
        if not self.config.overridable_initializers:
            _make_initializer_inputs_constant(model, log)
        # Folding a shape chain can make more shapes static (a Reshape's target becomes known),
        # so rounds alternate with shape inference until one folds nothing; the skips kept are
        # that last round's.
        for _ in range(_MAX_ROUNDS):
            changes, skips = len(log.changes), len(log.skipped)
            self._fold_round(model, log)
            if len(log.changes) == changes:
                break
            del log.skipped[skips:]
            infer_value_types(model, oir.to_proto(model), Path("<fold-constants>"))
            infer_missing_shapes(model)

    def _fold_round(self, model: oir.Model, log: PassLog) -> None:
        # Graph order is topological, so a node's constant inputs are folded before it is seen.
        for node in list(model.graph.all_nodes()):
            standard = node.domain in ("", "ai.onnx")
            if standard and node.op_type == "Constant":
                _lift_constant(node, model, log)
            elif standard and node.op_type in ("Shape", "Size"):
                _fold_static_shape(node, log)
            else:
                self._fold(node, model, log)

    def _fold(self, node: oir.Node, model: oir.Model, log: PassLog) -> None:
        tensors: list[oir.TensorProtocol | None] = []
        overridable: list[oir.Value] = []
        for value in node.inputs:
            tensor = None if value is None else _constant(value)
            if value is not None and tensor is None:
                if not value.is_initializer():
                    return  # reads a computed value: nothing to fold here
                overridable.append(value)
            tensors.append(tensor)
        if overridable:
            what = (
                "an initializer that is also a graph input, so a caller may override it"
                if len(overridable) == 1
                else "initializers that are also graph inputs, so a caller may override them"
            )
            log.skip(
                [node],
                rule="fold",
                reason=f"not folded: {describe_node(node)} reads {_name_list(overridable)}, {what}",
            )
            return
        reason = self._blocker(node, tensors)
        if reason is None:
            try:
                arrays = _evaluate(node, tensors, model)
            except _NotEvaluable as error:
                reason = f"{describe_node(node)} could not be evaluated: {error}"
            else:
                sizes = [None if array is None else array.size for array in arrays]
                reason = self._oversized(node, sizes)
        if reason is not None:
            log.skip([node], rule="fold", reason=f"not folded: {reason}")
            return
        names = _replace_with_initializers(node, arrays)
        log.removed(
            [node],
            rule="fold",
            reason=f"{describe_node(node)} reads only constants; folded into initializer {names}",
        )

    def _blocker(self, node: oir.Node, tensors: Sequence[oir.TensorProtocol | None]) -> str | None:
        """Why `node` must not be evaluated, judged before evaluating it."""
        if is_nondeterministic(node):
            return f"{describe_node(node)} is nondeterministic"
        if any(subgraphs_of(node)):
            return f"{describe_node(node)} has subgraphs"
        return self._oversized(node, _expected_sizes(node, tensors))

    def _oversized(self, node: oir.Node, sizes: Sequence[int | None]) -> str | None:
        for value, size in zip(node.outputs, sizes, strict=True):
            if size is not None and size > self.config.max_elements:
                return (
                    f"output '{value.name}' of {describe_node(node)} has {size} elements "
                    f"> max_elements={self.config.max_elements}"
                )
        return None


def _make_initializer_inputs_constant(model: oir.Model, log: PassLog) -> None:
    """IR<4 requires every initializer to be listed as a graph input too, which made weights
    look overridable; treat them as the constants they almost always are."""
    if model.ir_version >= CONSTANT_INITIALIZERS_IR_VERSION:
        return
    graph = model.graph
    defaults = [value for value in graph.inputs if value.is_initializer()]
    if not defaults:
        return
    for value in defaults:
        graph.inputs.remove(value)
    old_version = model.ir_version
    model.ir_version = CONSTANT_INITIALIZERS_IR_VERSION
    log.changed_graph(
        rule="initializer-inputs",
        reason=f"IR version {old_version} lists every initializer as a graph input; removed "
        f"{len(defaults)} initializers ({_name_list(defaults)}) from the graph inputs so they are "
        f"constants, and raised ir_version to {CONSTANT_INITIALIZERS_IR_VERSION}, the first "
        "that allows that (overridable_initializers=false)",
    )


def _lift_constant(node: oir.Node, model: oir.Model, log: PassLog) -> None:
    """A Constant becomes an initializer whatever its size: its data is in the model already."""
    try:
        arrays = _evaluate(node, [], model)
    except _NotEvaluable as error:
        log.skip(
            [node],
            rule="constant-node",
            reason=f"not lifted: {describe_node(node)} could not be evaluated: {error}",
        )
        return
    names = _replace_with_initializers(node, arrays)
    log.removed(
        [node],
        rule="constant-node",
        reason=f"lifted {describe_node(node)} into initializer {names}",
    )


def _fold_static_shape(node: oir.Node, log: PassLog) -> None:
    """Shape and Size read only the static part of a shape, not the data."""
    value = node.inputs[0]
    dims = None if value.shape is None else list(value.shape)
    if dims is not None and node.op_type == "Shape":
        # ONNX clamps start and end exactly as a Python slice does.
        dims = dims[node.attributes.get_int("start", 0) : node.attributes.get_int("end", None)]
    if dims is None or not all(isinstance(dim, int) for dim in dims):
        log.skip(
            [node],
            rule="static-shape",
            reason=f"not folded: {describe_node(node)} reads '{value.name}' of shape "
            f"{'unknown' if value.shape is None else value.shape}, which is not static",
        )
        return
    array = np.array(dims if node.op_type == "Shape" else math.prod(dims), dtype=np.int64)
    names = _replace_with_initializers(node, [array])
    log.removed(
        [node],
        rule="static-shape",
        reason=f"{describe_node(node)} of '{value.name}' (static shape {value.shape}) "
        f"folded into initializer {names}",
    )


def _constant(value: oir.Value) -> oir.TensorProtocol | None:
    """The value's tensor if it is fixed: an initializer, of this graph or an enclosing one, that
    is not a graph input. (Constant nodes are lifted before their readers are visited.)"""
    if value.is_initializer() and not value.is_graph_input():
        return value.const_value
    return None


def _is_omitted(value: oir.Value) -> bool:
    """An optional output the model does not ask for."""
    return not value.name and not value.uses() and not value.is_graph_output()


def _expected_sizes(
    node: oir.Node, tensors: Sequence[oir.TensorProtocol | None]
) -> list[int | None]:
    """Output element counts known before evaluating: static inferred shapes, and the shape
    operand of ConstantOfShape (IR<4 models often leave those outputs without a shape)."""
    sizes: list[int | None] = []
    for value in node.outputs:
        shape = value.shape
        if shape is not None and all(isinstance(dim, int) for dim in shape):
            sizes.append(math.prod(shape))
        elif node.op_type == "ConstantOfShape" and tensors and tensors[0] is not None:
            sizes.append(int(np.prod(tensors[0].numpy())))
        else:
            sizes.append(None)
    return sizes


def _evaluate(
    node: oir.Node, tensors: Sequence[oir.TensorProtocol | None], model: oir.Model
) -> list[np.ndarray | None]:
    """The node's outputs (None for omitted optional ones), computed by running it alone: on
    the reference path first (`ir.reference`, which drift measurements also run on), then with
    the ONNX evaluator (`onnx.reference`), which also knows the opsets that path dropped."""
    one = _one_node_model(node, tensors, model)
    wanted = [value for value in node.outputs if not _is_omitted(value)]
    errors = []
    for runtime, run in (
        ("reference path", _run_reference_path),
        ("ONNX evaluator", _run_evaluator),
    ):
        try:
            arrays = run(one)
            _check_dtypes(wanted, arrays)
        except Exception as error:  # each runtime raises exception types of its own
            errors.append(f"{runtime}: {first_line(error)}")
            continue
        found = iter(arrays)
        return [None if _is_omitted(value) else next(found) for value in node.outputs]
    raise _NotEvaluable("; ".join(errors))


def _one_node_model(
    node: oir.Node, tensors: Sequence[oir.TensorProtocol | None], model: oir.Model
) -> oir.Model:
    """A model of just `node`, its constant inputs as initializers under their own names."""
    initializers: dict[str, oir.Value] = {}
    inputs: list[oir.Value | None] = []
    for value, tensor in zip(node.inputs, tensors, strict=True):
        if value is None or tensor is None:
            inputs.append(None)
            continue
        if value.name not in initializers:
            initializers[value.name] = oir.Value(
                name=value.name,
                type=oir.TensorType(tensor.dtype),
                shape=oir.Shape(tensor.shape),
                const_value=tensor,
            )
        inputs.append(initializers[value.name])
    copy = oir.Node(
        node.domain,
        node.op_type,
        inputs,
        attributes=list(node.attributes.values()),
        overload=node.overload,
        num_outputs=len(node.outputs),
        version=node.version,
    )
    for new, old in zip(copy.outputs, node.outputs, strict=True):
        new.name = "" if _is_omitted(old) else old.name
    graph = oir.Graph(
        [],
        [value for value in copy.outputs if value.name],
        nodes=[copy],
        initializers=list(initializers.values()),
        opset_imports=dict(model.opset_imports),
    )
    calls_function = (node.domain, node.op_type, node.overload) in model.functions
    return oir.Model(
        graph,
        ir_version=max(model.ir_version, CONSTANT_INITIALIZERS_IR_VERSION),
        functions=list(model.functions.values()) if calls_function else [],
    )


def _run_reference_path(one: oir.Model) -> list[np.ndarray]:
    return run_reference(one, {})


def _run_evaluator(one: oir.Model) -> list[np.ndarray]:
    return list(ReferenceEvaluator(oir.to_proto(one)).run(None, {}))


def _check_dtypes(values: Sequence[oir.Value], arrays: Sequence[np.ndarray]) -> None:
    for value, array in zip(values, arrays, strict=True):
        got = oir.DataType.from_numpy(array.dtype)
        if value.dtype is not None and got != value.dtype:
            raise TypeError(f"gave {got.name} for '{value.name}', which is {value.dtype.name}")


def _replace_with_initializers(node: oir.Node, arrays: Sequence[np.ndarray | None]) -> str:
    """Swap the node's outputs for initializers of the same names, drop the node, and name the
    new initializers for the log."""
    graph = node.graph
    assert graph is not None, "folded nodes are in a graph"
    described = []
    for value, array in zip(node.outputs, arrays, strict=True):
        if array is None:
            continue
        name = value.name
        value.name = None
        constant = add_initializer(graph, name, np.asarray(array))
        value.replace_all_uses_with(constant, replace_graph_outputs=True)
        described.append(f"'{constant.name}' ({array.dtype}{list(array.shape)})")
    graph.remove(node, safe=True)
    return ", ".join(described)


def _name_list(values: Sequence[oir.Value], limit: int = 3) -> str:
    names = ", ".join(f"'{value.name}'" for value in values[:limit])
    return names + (f" and {len(values) - limit} more" if len(values) > limit else "")
