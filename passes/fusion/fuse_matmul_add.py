"""fuse-matmul-add: MatMul by a constant weight, then Add of a constant bias, becomes one Gemm.

Gemm is the Linear layer as one op, which targets run as one kernel with the bias added in its
epilogue. Only a constant B is fused, although Gemm would accept any B: a product of two
activations plus an Add is attention scores plus a mask, which fuse-attention wants to see as it
is. Gemm is 2-D, so a MatMul whose input has rank > 2 is fused only with `reshape_nd`, as
Reshape -> Gemm -> Reshape with static shapes (which may hide the MatMul from later pattern
matchers, so it is off by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from passes.base import PassConfig
from passes.contracts import CONSTANT_WEIGHTS
from passes.engine.match import Match
from passes.engine.patterns import AnyValue, Const, Op
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Emits, Rewrite, RewriteContext, Rule
from passes.rewrite import NoMatch, add_initializer, broadcast_keeps_shape


@dataclass(frozen=True)
class FuseMatMulAddConfig(PassConfig):
    """`reshape_nd`: also fuse a MatMul whose input has rank > 2, by folding its leading axes
    into Gemm's rows (needs a static input shape and a bias that varies only along N)."""

    reshape_nd: bool = False


def _matrix(weight: np.ndarray) -> str | None:
    return None if weight.ndim == 2 else f"has rank {weight.ndim}; Gemm needs 2-D"


MATMUL_PLUS_BIAS = Op(
    "Add",
    inputs=(
        Op(
            "MatMul",
            inputs=(AnyValue("data"), Const("weight", role="weight", check=_matrix)),
            capture="matmul",
        ),
        Const("bias"),
    ),
)


def _shape_text(dims: list[int | oir.SymbolicDim] | tuple[int, ...]) -> str:
    return str(oir.Shape(list(dims)))


def _check_shapes(shape: oir.Shape | None, width: int, bias: np.ndarray, reshape_nd: bool) -> None:
    """NoMatch unless Gemm can compute the product of an input of `shape` and a [K, `width`]
    weight, plus `bias`: a 2-D input, or (with reshape_nd) a static one whose rows fold."""
    if shape is None:
        raise NoMatch("MatMul input has unknown rank; Gemm needs 2-D")
    if len(shape) < 2 or (len(shape) > 2 and not reshape_nd):
        hint = " (reshape_nd=true would fuse it through Reshapes)" if len(shape) > 2 else ""
        raise NoMatch(f"MatMul input has rank {len(shape)}; Gemm needs 2-D{hint}")
    if len(shape) > 2 and not shape.is_static():
        raise NoMatch(f"MatMul input shape {shape} is not static; reshape_nd needs static shapes")
    output = [*shape.dims[:-1], width]
    if not broadcast_keeps_shape(output, bias.shape):
        raise NoMatch(
            f"bias shape {_shape_text(bias.shape)} does not broadcast to the MatMul output "
            f"{_shape_text(output)}"
        )
    if len(shape) > 2 and any(dim != 1 for dim in bias.shape[:-1]):
        raise NoMatch(
            f"bias shape {_shape_text(bias.shape)} varies along the leading axes that "
            "reshape_nd folds into Gemm's rows"
        )


def _gemm(match: Match, context: RewriteContext) -> Rewrite:
    """Gemm(A, B, bias) for a 2-D A; for a higher rank (with reshape_nd) the same on A's rows
    flattened, between two Reshapes."""
    assert isinstance(context.config, FuseMatMulAddConfig)
    data = match.value("data")
    assert data is not None
    width = match.constant("weight").shape[1]
    _check_shapes(data.shape, width, match.constant("bias"), context.config.reshape_nd)
    if len(data.shape) > 2:
        return _flattened_gemm(match, context.graph, data)
    gemm = _gemm_node(match, data, match.value("bias"))
    return Rewrite(
        (gemm,),
        {match.root.outputs[0]: gemm.outputs[0]},
        "MatMul by a constant weight plus a constant bias is one Gemm",
    )


def _gemm_node(match: Match, rows: oir.Value, bias: oir.Value | None) -> oir.Node:
    """Gemm(rows, weight, bias), under the MatMul's name."""
    weight = match.value("weight")
    return oir.node("Gemm", [rows, weight, bias], name=match.node("matmul").name)


def _flattened_gemm(match: Match, graph: oir.Graph, data: oir.Value) -> Rewrite:
    """Reshape A to [rows, K], Gemm, Reshape back: Gemm on A's leading axes folded into rows."""
    *leading, depth = data.shape.dims
    width = match.constant("weight").shape[1]
    rows = math.prod(leading)
    bias_value, bias = match.value("bias"), match.constant("bias")
    if bias.ndim > 1:
        bias_value = add_initializer(graph, f"{bias_value.name}_row", bias.reshape(-1))
    base = match.root.outputs[0].name or "matmul_add"
    rows_shape = add_initializer(graph, f"{base}_rows", np.array([rows, depth], np.int64))
    out_shape = add_initializer(graph, f"{base}_shape", np.array([*leading, width], np.int64))
    flatten = oir.node("Reshape", [data, rows_shape])
    gemm = _gemm_node(match, flatten.outputs[0], bias_value)
    unflatten = oir.node("Reshape", [gemm.outputs[0], out_shape])
    for value, dims in ((flatten.outputs[0], [rows, depth]), (gemm.outputs[0], [rows, width])):
        value.type = data.type
        value.shape = oir.Shape(dims)
    return Rewrite(
        (flatten, gemm, unflatten),
        {match.root.outputs[0]: unflatten.outputs[0]},
        f"MatMul of rank {len(leading) + 1} plus a constant bias is one Gemm on the flattened rows",
        variant="matmul-add-reshape-gemm",
    )


class FuseMatMulAdd(RuleSetPass):
    """MatMul(A, B const [K, N]) + Add(bias const) -> Gemm(A, B, bias)."""

    name = "fuse-matmul-add"
    summary = "MatMul by a constant weight plus a constant bias becomes Gemm"
    config_type = FuseMatMulAddConfig
    requires = (CONSTANT_WEIGHTS,)  # only a constant weight and bias are fused
    rules = (Rule("matmul-add-gemm", MATMUL_PLUS_BIAS, build=_gemm, requires=Emits("Gemm")),)
