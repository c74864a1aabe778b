"""How much memory a run needs at least, estimated from the bound shapes before anything is
allocated: a batch of a billion images should be refused in a line, not fail as a 477 GiB
allocation (or be killed by the OOM killer) after the model compiled."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import onnx_ir as oir

from ir.errors import AsicperfError

_GIB = 2**30


def value_bytes(value: oir.Value, bindings: Mapping[str, int] | None = None) -> int | None:
    """Bytes of a value whose dtype is known and whose dims are static or named in
    `bindings`; None otherwise."""
    if value.dtype is None or value.shape is None:
        return None
    dims = [
        dim if isinstance(dim, int) else (bindings or {}).get(str(dim.value)) for dim in value.shape
    ]
    if any(dim is None for dim in dims):
        return None
    return math.prod(dims) * value.dtype.itemsize


def minimum_bytes(model: oir.Model, bindings: Mapping[str, int] | None = None) -> int:
    """A lower bound of a run's peak memory: the weights, every graph input and output, and the
    largest intermediate value (each must exist at once at some point). `bindings` size the
    symbolic dims, so a model need not be loaded again per batch size to be estimated."""
    graph = model.graph

    def size(value: oir.Value) -> int:
        return value_bytes(value, bindings) or 0

    weights = sum(size(v) for v in graph.initializers.values())
    ends = sum(size(v) for v in [*graph.inputs, *graph.outputs])
    largest = max((size(o) for node in graph for o in node.outputs), default=0)
    return weights + ends + largest


def available_bytes(meminfo: str | None = None) -> int | None:
    """MemAvailable from /proc/meminfo (None where it cannot be read)."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:
            return None
    match = re.search(r"^MemAvailable:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def check_fits_in_memory(
    model: oir.Model,
    what: str,
    available: int | None = None,
    bindings: Mapping[str, int] | None = None,
) -> None:
    """Refuse a run whose lower-bound estimate exceeds the memory available now."""
    available = available_bytes() if available is None else available
    needed = minimum_bytes(model, bindings)
    if available is not None and needed > available:
        raise AsicperfError(
            f"{what}: needs at least {needed / _GIB:,.1f} GiB (weights, inputs, outputs and the "
            f"largest intermediate), {available / _GIB:,.1f} GiB available"
        )
