"""Data movement: views, copies, gathers, scatters, casts, resizes and sequence plumbing.

All cost 0 FLOPs except Resize/Upsample with interpolation (2 FLOPs per tap per output element:
2 taps per resized axis for linear, 4 for cubic). What differs is traffic:

- views (Reshape, Squeeze, Unsqueeze, Flatten, Identity, inference Dropout) and metadata
  (Shape, Size, Constant) move 0 bytes: runtimes alias or fold them;
- Gather* read the indices and only the gathered rows: indices + 2 * output bytes;
- Slice reads only the kept elements: 2 * output bytes;
- generators (ConstantOfShape, Range, EyeLike) only write: output bytes;
- sequence ops copy tensors into or out of a sequence: 2 * bytes of their tensor operands (the
  sequence itself has no static size);
- everything else (Transpose, Concat, Split, Pad, Cast, ...) reads inputs once, writes outputs
  once.
"""

from __future__ import annotations

import math

from ir.ops.shapes import same_as_input
from ir.ops.table import BytesRule, NodeShapes, define, io_bytes, no_bytes, no_flops

_VIEWS = ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout", "BitCast")
_METADATA = ("Shape", "Size", "Constant")
_COPIES = (  # noqa: SIM905 (a word list reads better than a column of strings)
    "Transpose Concat Split Expand Tile Pad CenterCropPad Cast CastLike DepthToSpace SpaceToDepth"
    " ScatterND ScatterElements Scatter Compress ReverseSequence Trilu OneHot NonZero Unique"
    " MaxUnpool"
).split()
_GATHERS = ("Gather", "GatherElements", "GatherND")
_GENERATORS = ("ConstantOfShape", "Range", "EyeLike")
_STRING_OPS = ("StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch")

define(
    ("Identity", "Dropout"),
    "data-movement",
    no_flops,
    bytes_moved=no_bytes,
    shapes=same_as_input(),
    formula="0 (view)",
)
define(
    [op for op in _VIEWS if op not in ("Identity", "Dropout")],
    "data-movement",
    no_flops,
    bytes_moved=no_bytes,
    formula="0 (view)",
)
define(_METADATA, "data-movement", no_flops, bytes_moved=no_bytes, formula="0 (metadata)")
define(_COPIES, "data-movement", no_flops, formula="0 (copy)")
define(_STRING_OPS, "data-movement", no_flops, formula="0 (string op; bytes unknown)")


def _gather_bytes(view: NodeShapes) -> int:
    return view.input_bytes(1) + 2 * view.output_bytes(0)


def _slice_bytes(view: NodeShapes) -> int:
    return 2 * view.output_bytes(0)


def _write_only_bytes(view: NodeShapes) -> int:
    return view.output_bytes(0)


define(_GATHERS, "data-movement", no_flops, bytes_moved=_gather_bytes, formula="0 (gather)")
define("Slice", "data-movement", no_flops, bytes_moved=_slice_bytes, formula="0 (copy)")
define(_GENERATORS, "data-movement", no_flops, bytes_moved=_write_only_bytes, formula="0 (fill)")


# Sequence op -> (which inputs are sequences, whether output 0 is a sequence). Taken from the
# op's signature, not from value types: shape inference may leave sequence values typed as
# tensors.
_SEQUENCE_OPS: dict[str, tuple[tuple[int, ...], bool]] = {
    "SequenceEmpty": ((), True),
    "SequenceConstruct": ((), True),
    "SequenceInsert": ((0,), True),
    "SequenceErase": ((0,), True),
    "SequenceAt": ((0,), False),
    "SequenceLength": ((0,), False),
    "SplitToSequence": ((), True),
    "ConcatFromSequence": ((0,), False),
}


def _sequence_bytes(sequence_inputs: tuple[int, ...], sequence_output: bool) -> BytesRule:
    """2 * bytes of the tensor operands: each is copied into or out of the sequence."""

    def rule(view: NodeShapes) -> int:
        total = sum(
            view.input_bytes(index)
            for index, value in enumerate(view.node.inputs)
            if value is not None and index not in sequence_inputs
        )
        if not sequence_output:
            total += view.output_bytes(0)
        return 2 * total

    return rule


for _op_type, (_sequence_inputs, _sequence_output) in _SEQUENCE_OPS.items():
    define(
        _op_type,
        "data-movement",
        no_flops,
        bytes_moved=_sequence_bytes(_sequence_inputs, _sequence_output),
        formula="0 (sequence)",
    )

# Interpolation taps per resized axis.
_TAPS_PER_AXIS = {"linear": 2, "bilinear": 2, "cubic": 4}


def _resize_flops(view: NodeShapes) -> int:
    taps_per_axis = _TAPS_PER_AXIS.get(view.attr_str("mode", "nearest"), 0)
    if not taps_per_axis:
        return 0
    x, y = view.input_shape(0), view.output_shape(0)
    resized = sum(a != b for a, b in zip(x, y, strict=False))
    if resized == 0:
        return 0
    return 2 * taps_per_axis**resized * math.prod(y)


define(
    ("Resize", "Upsample"),
    "data-movement",
    _resize_flops,
    bytes_moved=io_bytes,
    formula="0 for nearest; 2 * taps * output elements for linear (2/axis) and cubic (4/axis)",
)
