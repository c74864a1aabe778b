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
import onnx_ir as ir

from passes.base import Pass, PassConfig, PassLog
from passes.rewrite import (
    add_initializer,
    broadcast_keeps_shape,
    constant_array,
    non_constant_reason,
    produced_by,
    replace_nodes,
    shared_output_reason,
)

RULE = "matmul-add-gemm"
RULE_ND = "matmul-add-reshape-gemm"


@dataclass(frozen=True)
class FuseMatMulAddConfig(PassConfig):
    """`reshape_nd`: also fuse a MatMul whose input has rank > 2, by folding its leading axes
    into Gemm's rows (needs a static input shape and a bias that varies only along N)."""

    reshape_nd: bool = False


def _shape_text(dims: list[int | ir.SymbolicDim] | tuple[int, ...]) -> str:
    return str(ir.Shape(list(dims)))


class FuseMatMulAdd(Pass):
    """MatMul(A, B const [K, N]) + Add(bias const) -> Gemm(A, B, bias)."""

    name = "fuse-matmul-add"
    summary = "MatMul by a constant weight plus a constant bias becomes Gemm"
    config_type = FuseMatMulAddConfig

    def run(self, model: ir.Model, log: PassLog) -> None:
        for add in list(model.graph):
            if add.op_type != "Add" or add.domain != "":
                continue
            sites = [
                (matmul, add.inputs[1 - index])
                for index, value in enumerate(add.inputs)
                if (matmul := produced_by(value, "MatMul"))
            ]
            reasons = [self._reason_not_to_fuse(matmul, bias) for matmul, bias in sites]
            fusable = [site for site, reason in zip(sites, reasons, strict=True) if not reason]
            if fusable:
                matmul, bias = fusable[0]
                self._fuse(model.graph, matmul, add, bias, log)
                continue
            for (matmul, _), reason in zip(sites, reasons, strict=True):
                log.skip([matmul, add], rule=RULE, reason=f"MatMul+Add not fused: {reason}")

    def _reason_not_to_fuse(self, matmul: ir.Node, bias_value: ir.Value) -> str | None:
        reason = shared_output_reason(matmul)
        if reason is not None:
            return reason
        weight_value = matmul.inputs[1]
        weight = constant_array(weight_value)
        if weight is None:
            return (
                f"MatMul's B '{weight_value.name}' {non_constant_reason(weight_value)}; "
                "only a product with a constant weight becomes Gemm"
            )
        if weight.ndim != 2:
            return f"MatMul's B has rank {weight.ndim}; Gemm needs 2-D"
        shape = matmul.inputs[0].shape
        if shape is None:
            return "MatMul input has unknown rank; Gemm needs 2-D"
        if len(shape) < 2 or (len(shape) > 2 and not self.config.reshape_nd):
            hint = " (reshape_nd=true would fuse it through Reshapes)" if len(shape) > 2 else ""
            return f"MatMul input has rank {len(shape)}; Gemm needs 2-D{hint}"
        if len(shape) > 2 and not shape.is_static():
            return f"MatMul input shape {shape} is not static; reshape_nd needs static shapes"
        bias = constant_array(bias_value)
        if bias is None:
            return f"Add's other input '{bias_value.name}' {non_constant_reason(bias_value)}"
        output = [*shape.dims[:-1], weight.shape[1]]
        if not broadcast_keeps_shape(output, bias.shape):
            return (
                f"bias shape {_shape_text(bias.shape)} does not broadcast to the MatMul output "
                f"{_shape_text(output)}"
            )
        if len(shape) > 2 and any(dim != 1 for dim in bias.shape[:-1]):
            return (
                f"bias shape {_shape_text(bias.shape)} varies along the leading axes that "
                "reshape_nd folds into Gemm's rows"
            )
        return None

    def _fuse(
        self, graph: ir.Graph, matmul: ir.Node, add: ir.Node, bias_value: ir.Value, log: PassLog
    ) -> None:
        data, weight = matmul.inputs
        if len(data.shape) == 2:
            gemm = ir.node("Gemm", [data, weight, bias_value], name=matmul.name)
            reason = "MatMul by a constant weight plus a constant bias is one Gemm"
            replace_nodes(
                log,
                [matmul, add],
                [gemm],
                {add.outputs[0]: gemm.outputs[0]},
                rule=RULE,
                reason=reason,
            )
            return
        *leading, depth = data.shape.dims
        width = constant_array(weight).shape[1]
        rows = math.prod(leading)
        bias = constant_array(bias_value)
        if bias.ndim > 1:
            bias_value = add_initializer(graph, f"{bias_value.name}_row", bias.reshape(-1))
        base = add.outputs[0].name or "matmul_add"
        rows_shape = add_initializer(graph, f"{base}_rows", np.array([rows, depth], np.int64))
        out_shape = add_initializer(graph, f"{base}_shape", np.array([*leading, width], np.int64))
        flatten = ir.node("Reshape", [data, rows_shape])
        gemm = ir.node("Gemm", [flatten.outputs[0], weight, bias_value], name=matmul.name)
        unflatten = ir.node("Reshape", [gemm.outputs[0], out_shape])
        for value, dims in ((flatten.outputs[0], [rows, depth]), (gemm.outputs[0], [rows, width])):
            value.type = data.type
            value.shape = ir.Shape(dims)
        replace_nodes(
            log,
            [matmul, add],
            [flatten, gemm, unflatten],
            {add.outputs[0]: unflatten.outputs[0]},
            rule=RULE_ND,
            reason=f"MatMul of rank {len(leading) + 1} plus a constant bias is one Gemm on "
            "the flattened rows",
        )
