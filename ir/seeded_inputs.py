"""Seeded random inputs for a model, for numeric checks when no data set is given.

Same model + seed + bindings -> the same arrays, on every machine. Floats are standard normal,
integers small non-negative (valid as indices into any table of at least 16 rows), booleans fair.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as oir

from ir.errors import AsicperfError

_INT_HIGH = 16


def seeded_inputs(
    model: oir.Model,
    seed: int = 0,
    bindings: Mapping[str, int] | None = None,
    int_high: int = _INT_HIGH,
) -> dict[str, np.ndarray]:
    """One array per graph input that is not an initializer; symbolic dims default to 1;
    integers are drawn from [0, int_high)."""
    bindings = bindings or {}
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.inputs:
        if value.is_initializer():
            continue
        if value.dtype is None or value.shape is None:
            raise AsicperfError(f"input '{value.name}': unknown type or shape, give it explicitly")
        shape = tuple(
            d if isinstance(d, int) else bindings.get(str(d.value), 1) for d in value.shape
        )
        dtype = value.dtype.numpy()
        if dtype.kind == "f":
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[value.name] = rng.integers(0, int_high, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[value.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise AsicperfError(f"input '{value.name}': cannot make random {value.dtype} data")
    return feeds
