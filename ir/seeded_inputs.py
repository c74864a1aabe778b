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
DEFAULT_DIM = 1
# Dims that are the sum of others, by onnxruntime-genai's names for a decoder with a KV cache:
# the attention mask spans the cached tokens and the new ones. Left at 1 with its parts at 1,
# it would describe no step a decoder can take (a 1-token mask over a 2-token cache), which
# some kernels broadcast and fused attention does not.
SUM_DIMS = {"total_sequence_length": ("past_sequence_length", "sequence_length")}


def dim_sizes(model: oir.Model, bindings: Mapping[str, int] | None = None) -> dict[str, int]:
    """Every symbolic dim of `model`'s inputs: as bound, else the sum of its parts
    (`SUM_DIMS`) when the model has them, else 1."""
    names = {
        str(d.value)
        for value in model.graph.inputs
        if value.shape is not None
        for d in value.shape
        if not isinstance(d, int)
    }
    sizes = {name: (bindings or {}).get(name, DEFAULT_DIM) for name in names}
    for total, parts in SUM_DIMS.items():
        if total in names and total not in (bindings or {}) and all(p in names for p in parts):
            sizes[total] = sum(sizes[part] for part in parts)
    return sizes


def seeded_inputs(
    model: oir.Model,
    seed: int = 0,
    bindings: Mapping[str, int] | None = None,
    int_high: int = _INT_HIGH,
) -> dict[str, np.ndarray]:
    """One array per graph input that is not an initializer; symbolic dims as `dim_sizes`
    gives them; integers are drawn from [0, int_high)."""
    bindings = dim_sizes(model, bindings)
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.inputs:
        if value.is_initializer():
            continue
        if value.dtype is None or value.shape is None:
            raise AsicperfError(f"input '{value.name}': unknown type or shape, give it explicitly")
        shape = tuple(d if isinstance(d, int) else bindings[str(d.value)] for d in value.shape)
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
