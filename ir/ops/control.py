"""Control flow and training-only ops.

If, Loop, Scan and SequenceMap run subgraphs whose cost depends on data (branch taken, trip
count), and Gradient stands for a whole backward graph, so their cost is not modelled here:
`node_cost` answers None. Optional wrappers only pass a reference along: 0 FLOPs, 0 bytes.
"""

from __future__ import annotations

from ir.ops.table import define, no_bytes, no_flops, unknown_cost

define(("If", "Loop", "Scan", "SequenceMap"), "control", unknown_cost, formula="not modelled")
define(
    "Gradient",
    "control",
    unknown_cost,
    domain="ai.onnx.preview.training",
    formula="not modelled",
)
define(
    ("Optional", "OptionalGetElement", "OptionalHasElement"),
    "control",
    no_flops,
    bytes_moved=no_bytes,
    formula="0",
)
