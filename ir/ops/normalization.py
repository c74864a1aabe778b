"""Normalizations: a fixed FLOP count per element of the normalized tensor.

Statistics cost 4 per element (sum for the mean 1; subtract, square, sum for the variance 3),
normalizing 2 (subtract mean, multiply by the reciprocal std; the per-group sqrt is O(groups) and
not counted), the affine scale and shift 2. BatchNormalization in inference has its statistics
given: 4 per element ((x - mean) * rstd * scale + bias), 8 with training_mode=1.
"""

from __future__ import annotations

from ir.ops.shapes import same_as_input
from ir.ops.table import NodeShapes, define, per_output_element

_STATISTICS = 4
_NORMALIZE = 2
_AFFINE = 2
LAYER_NORM_FLOPS = _STATISTICS + _NORMALIZE + _AFFINE
RMS_NORM_FLOPS = 4  # square and sum 2, multiply by 1/rms 1, scale 1

# op type -> FLOPs per element
_PER_ELEMENT: dict[str, int] = {
    "LayerNormalization": LAYER_NORM_FLOPS,
    "InstanceNormalization": LAYER_NORM_FLOPS,
    "GroupNormalization": LAYER_NORM_FLOPS,
    "MeanVarianceNormalization": _STATISTICS + _NORMALIZE,
    "RMSNormalization": RMS_NORM_FLOPS,
    "SimplifiedLayerNormalization": RMS_NORM_FLOPS,  # onnxruntime's default-domain RMSNorm
    "LpNormalization": 3,  # |x| or x^2, sum, divide
}

for _op_type, _flops in _PER_ELEMENT.items():
    define(
        _op_type,
        "normalization",
        per_output_element(_flops),
        shapes=same_as_input(),
        formula=f"{_flops} * output elements",
    )


def _batch_norm_flops(view: NodeShapes) -> int:
    training = view.attr_int("training_mode", 0)
    return (4 + (_STATISTICS if training else 0)) * view.output_numel(0)


define(
    "BatchNormalization",
    "normalization",
    _batch_norm_flops,
    shapes=same_as_input(),
    formula="4 * output elements (8 with training_mode=1)",
)


def _lrn_flops(view: NodeShapes) -> int:
    """Square once, sum `size` neighbours, then scale, add bias, pow and divide."""
    return (view.attr_int("size", 1) + 5) * view.output_numel(0)


define(
    "LRN",
    "normalization",
    _lrn_flops,
    shapes=same_as_input(),
    formula="(size + 5) * output elements",
)
