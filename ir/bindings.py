"""Values for a graph's named symbolic dims (`--dim batch=8`, `--batch 8`), checked against
the graph before they are bound: a name no input carries, or a size that is negative or that no
tensor could have, is a one-line error rather than a silent no-op or a protobuf overflow deep
inside the load.

A size of 0 is allowed for every dim. ONNX tensors may be empty, and a dim's name does not tell
this check what the dim means: a decoder's `past_sequence_length` is 0 at prefill, when the KV
cache is empty, and shape inference carries the 0 through (the cache's Concat gives the new
tokens alone). Where a 0 makes no sense, the option that knows the dim's meaning refuses it
(`--batch` and workloads' `batch_sizes` need at least one sample)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import onnx_ir as oir

from ir.errors import AsicperfError
from ir.model_io import load_model

# The largest extent any one dim may take: ONNX stores dims as int64, and no tensor this
# toolkit allocates could be larger than the address space in elements.
MAX_DIM = 2**40


def symbolic_dims(model: oir.Model) -> set[str]:
    """The names of the symbolic dims on the graph's inputs."""
    return {
        str(dim.value)
        for value in model.graph.inputs
        if value.shape is not None
        for dim in value.shape
        if not isinstance(dim, int) and dim.value is not None
    }


def check_dim_size(size: int, what: str) -> int:
    """`size` is a usable extent: 0 ≤ size ≤ MAX_DIM (0: an empty dim, see above)."""
    if not 0 <= size <= MAX_DIM:
        raise AsicperfError(f"{what}: {size} is out of range (expected 0 to {MAX_DIM})")
    return size


def parse_dim_options(pairs: list[str], what: str = "--dim") -> dict[str, int]:
    """`--dim NAME=SIZE` options as given (repeatable), sizes checked; the names are checked on
    the model (check_bindings), which the commands load only after every option is checked."""
    bindings: dict[str, int] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not name or not value.strip().isdigit():
            raise AsicperfError(f"{what} '{pair}': expected NAME=SIZE (0 or more), e.g. batch=8")
        if name in bindings:
            raise AsicperfError(f"{what} {pair}: '{name}' is already given")
        bindings[name] = check_dim_size(int(value), f"{what} {name}")
    return bindings


def check_bindings(model: oir.Model, bindings: Mapping[str, int], what: str) -> None:
    """Every binding names a symbolic input dim of `model` and has a usable size."""
    names = symbolic_dims(model)
    for name, size in bindings.items():
        if name not in names:
            known = ", ".join(sorted(names)) or "none: every input shape is static"
            raise AsicperfError(f"{what} {name}={size}: the model has no dim '{name}' ({known})")
        check_dim_size(size, f"{what} {name}")


def load_bound_model(
    path: str | os.PathLike[str], bindings: Mapping[str, int], what: str = "--dim"
) -> oir.Model:
    """The model at `path` with `bindings` fixed before shape inference. The names are checked
    on the model as stored first: once bound, a dim is no longer symbolic, and a name the model
    lacks would otherwise bind nothing, silently."""
    if bindings:
        check_bindings(load_model(path, infer_shapes=False), bindings, what)
    return load_model(path, bindings=bindings)
