"""Quantization: a fixed FLOP count per element.

QuantizeLinear: divide by scale, round, add zero point, saturate = 4. DequantizeLinear: subtract
zero point, multiply by scale = 2. DynamicQuantizeLinear: min and max over the input (2) plus
quantizing (4) = 6 per input element; the scale and zero point computation is O(1).
"""

from __future__ import annotations

from ir.ops.table import define, per_input_element

QUANTIZE_FLOPS = 4
DEQUANTIZE_FLOPS = 2

_PER_ELEMENT: dict[str, int] = {
    "QuantizeLinear": QUANTIZE_FLOPS,
    "DequantizeLinear": DEQUANTIZE_FLOPS,
    "DynamicQuantizeLinear": 2 + QUANTIZE_FLOPS,
}

for _op_type, _flops in _PER_ELEMENT.items():
    define(
        _op_type,
        "quantization",
        per_input_element(_flops),
        formula=f"{_flops} * input elements",
    )
