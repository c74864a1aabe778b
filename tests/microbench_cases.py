"""Every benchmarked op at each of its dtypes, at small shapes a test chooses."""

from __future__ import annotations

from collections.abc import Mapping

from microbench.ops import OPS, BenchCase, parse_case


def every_case(shapes: Mapping[str, str]) -> list[BenchCase]:
    """`shapes` gives a shape per matmul and conv op, and one under "rxc" for the row ops."""
    return [
        parse_case(op, dtype, shapes.get(op, shapes["rxc"]))
        for op, definition in OPS.items()
        for dtype in definition.dtypes
    ]
