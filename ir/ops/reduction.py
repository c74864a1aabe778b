"""Reductions, arg-reductions, TopK and scans: a fixed FLOP count per input element.

Reduce{Sum,Mean,Max,Min,Prod,LogSum} 1 (the mean's divide and the final log are per output and
not counted); Reduce{L1,L2,SumSquare,LogSumExp} 2 (abs, square or exp, then add); ArgMax, ArgMin,
TopK 1 (a compare; TopK's selection is counted as one pass); CumSum, CumProd 1.
"""

from __future__ import annotations

from ir.ops.table import define, per_input_element

_PER_INPUT_ELEMENT: dict[str, int] = {
    "ReduceSum": 1,
    "ReduceMean": 1,
    "ReduceMax": 1,
    "ReduceMin": 1,
    "ReduceProd": 1,
    "ReduceLogSum": 1,
    "ReduceL1": 2,
    "ReduceL2": 2,
    "ReduceSumSquare": 2,
    "ReduceLogSumExp": 2,
    "ArgMax": 1,
    "ArgMin": 1,
    "TopK": 1,
    "CumSum": 1,
    "CumProd": 1,
}

for _op_type, _flops in _PER_INPUT_ELEMENT.items():
    define(
        _op_type,
        "reduction",
        per_input_element(_flops),
        formula=f"{_flops} * input elements",
    )
