"""The op semantics table: for each ONNX op, in one place, its FLOPs, bytes moved and (where
ONNX shape inference falls short) an output shape rule.

FLOP conventions (all counts per node, given concrete input/output shapes):

- a multiply-add is 2 FLOPs; integer kernels (MatMulInteger, ConvInteger, QLinear*) count
  integer ops the same way in the same field;
- MatMul [..., M, K] x [..., K, N] (batch dims broadcast) = 2 * batch * M * N * K;
- Gemm = 2 * M * N * K, + M * N when C is given; alpha/beta scaling is not counted;
- Conv = 2 * N * Cout * prod(out_spatial) * Cin/group * prod(kernel), + N * Cout *
  prod(out_spatial) with bias; ConvTranspose = 2 * N * Cin * prod(in_spatial) * Cout/group *
  prod(kernel), + N * Cout * prod(out_spatial) with bias;
- elementwise ops and activations: a fixed count per output element, counting each arithmetic
  op, compare/select and transcendental function (exp, erf, tanh, ...) as 1 (Add = 1,
  Sigmoid = 4, Gelu = 5 in erf form, 9 in tanh form); normalizations and softmax likewise
  (LayerNormalization = 8, BatchNormalization = 4, Softmax = 5);
- pooling = prod(kernel) per output element, global pooling = input elements;
- reductions = input elements (2 per element for L1/L2/SumSquare/LogSumExp);
- data movement and Cast = 0 FLOPs.

Bytes moved default to every input read once plus every output written once; views and metadata
ops move 0 bytes, Gather moves indices + 2 * output, Slice 2 * output. Each family module's
docstring lists its constants. Importing this package registers every entry.
"""

from __future__ import annotations

from ir.ops import (  # noqa: F401  (imported for their registrations)
    activation,
    control,
    data_movement,
    elementwise,
    linear,
    microsoft,
    normalization,
    pooling,
    quantization,
    recurrent,
    reduction,
)
from ir.ops.table import (
    Cost,
    CostUnknown,
    NodeShapes,
    OpSemantics,
    infer_missing_shapes,
    lookup,
    node_cost,
    registered_ops,
)

__all__ = [
    "Cost",
    "CostUnknown",
    "NodeShapes",
    "OpSemantics",
    "infer_missing_shapes",
    "lookup",
    "node_cost",
    "registered_ops",
]
