"""Elementwise arithmetic, math functions, comparisons and logic.

Each output element costs a fixed number of FLOPs, listed below as data. Every arithmetic op,
comparison, select and transcendental function (exp, log, sqrt, erf, sin, ...) counts as 1.
Variadic Sum/Max/Min cost (inputs - 1) per element, Mean one more for the divide.
"""

from __future__ import annotations

import onnx_ir as oir

from ir.ops.shapes import broadcast_inputs, same_as_input
from ir.ops.table import NodeShapes, define, per_output_element

_UNARY = (  # noqa: SIM905 (a word list reads better than a column of strings)
    "Abs Neg Sign Reciprocal Floor Ceil Round Sqrt Exp Log Erf Sin Cos Tan Asin Acos Atan Sinh"
    " Cosh Asinh Acosh Atanh Not BitwiseNot"
).split()
_UNARY_TO_BOOL = ("IsNaN", "IsInf")
_BINARY = "Add Sub Mul Div Pow Mod BitShift BitwiseAnd BitwiseOr BitwiseXor".split()  # noqa: SIM905
_COMPARISONS = "Equal Less LessOrEqual Greater GreaterOrEqual And Or Xor".split()  # noqa: SIM905

_ONE_PER_ELEMENT = per_output_element(1)
_ONE = "1 * output elements"

define(_UNARY, "elementwise", _ONE_PER_ELEMENT, shapes=same_as_input(), formula=_ONE)
define(
    _UNARY_TO_BOOL,
    "elementwise",
    _ONE_PER_ELEMENT,
    shapes=same_as_input(dtype=oir.DataType.BOOL),
    formula=_ONE,
)
define(_BINARY, "elementwise", _ONE_PER_ELEMENT, shapes=broadcast_inputs(), formula=_ONE)
define(
    _COMPARISONS,
    "elementwise",
    _ONE_PER_ELEMENT,
    shapes=broadcast_inputs(dtype=oir.DataType.BOOL),
    formula=_ONE,
)
define(
    "Where",
    "elementwise",
    _ONE_PER_ELEMENT,
    shapes=broadcast_inputs(dtype_from=1),
    formula="1 (select) * output elements",
)


def _fold_flops(view: NodeShapes) -> int:
    return (view.present_inputs() - 1) * view.output_numel(0)


def _mean_flops(view: NodeShapes) -> int:
    return view.present_inputs() * view.output_numel(0)


define(
    ("Sum", "Max", "Min"),
    "elementwise",
    _fold_flops,
    shapes=broadcast_inputs(),
    formula="(inputs - 1) * output elements",
)
define(
    "Mean",
    "elementwise",
    _mean_flops,
    shapes=broadcast_inputs(),
    formula="inputs * output elements",
)
