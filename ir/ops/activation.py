"""Activations and softmax: a fixed FLOP count per output element.

Counted as arithmetic ops, comparisons/selects and transcendental functions at 1 each:

    Relu max(0,x) 1 | LeakyRelu, PRelu mul+select 2 | ThresholdedRelu cmp+select 2 | Clip 2
    Tanh 1 | Sigmoid 1/(1+exp(-x)) 4 | HardSigmoid max(0,min(1,a*x+b)) 4 | HardSwish 5
    Elu exp,sub,mul,select 4 | Selu 5 | Celu 7 | Softplus log(1+exp) 3 | Softsign 3
    Mish x*tanh(softplus) 5 | Swish x*sigmoid(a*x) 6 | Shrink 3
    Gelu (erf) 0.5*x*(1+erf(x/sqrt2)) 5 | Gelu (tanh) 0.5*x*(1+tanh(c*(x+0.044715x^3))) 9
    Softmax, LogSoftmax: max, sub, exp, sum, div (or log-sub) 5 | Hardmax 1
"""

from __future__ import annotations

from ir.ops.shapes import broadcast_inputs, same_as_input
from ir.ops.table import NodeShapes, define, per_output_element

SIGMOID_FLOPS = 4
GELU_ERF_FLOPS = 5
GELU_TANH_FLOPS = 9

# Unary activations with their FLOPs per element; also the vocabulary of fused activations.
ACTIVATION_FLOPS: dict[str, int] = {
    "Relu": 1,
    "LeakyRelu": 2,
    "ThresholdedRelu": 2,
    "Clip": 2,
    "Tanh": 1,
    "Sigmoid": SIGMOID_FLOPS,
    "HardSigmoid": 4,
    "HardSwish": 5,
    "Elu": 4,
    "Selu": 5,
    "Celu": 7,
    "Softplus": 3,
    "Softsign": 3,
    "Mish": 5,
    "Swish": SIGMOID_FLOPS + 2,
    "Shrink": 3,
}

for _op_type, _flops in ACTIVATION_FLOPS.items():
    define(
        _op_type,
        "activation",
        per_output_element(_flops),
        shapes=same_as_input(),
        formula=f"{_flops} * output elements",
    )

define(
    "PRelu",
    "activation",
    per_output_element(2),
    shapes=broadcast_inputs(),
    formula="2 * output elements",
)


def _gelu_flops(view: NodeShapes) -> int:
    tanh_form = view.attr_str("approximate", "none") == "tanh"
    per_element = GELU_TANH_FLOPS if tanh_form else GELU_ERF_FLOPS
    return per_element * view.output_numel(0)


define(
    "Gelu",
    "activation",
    _gelu_flops,
    shapes=same_as_input(),
    formula=f"{GELU_ERF_FLOPS} (erf form) or {GELU_TANH_FLOPS} (tanh form) * output elements",
)

SOFTMAX_FLOPS = 5
define(
    ("Softmax", "LogSoftmax"),
    "activation",
    per_output_element(SOFTMAX_FLOPS),
    shapes=same_as_input(),
    formula=f"{SOFTMAX_FLOPS} * output elements",
)
define(
    "Hardmax",
    "activation",
    per_output_element(1),
    shapes=same_as_input(),
    formula="1 * output elements",
)
