"""The one place that turns what a user typed as MODEL into an ONNX file.

MODEL is a path to an ONNX file, or the name of a zoo entry. Every command that takes a model
goes through `resolve_model`, so a new zoo source only has to be added here.
"""

from __future__ import annotations

from pathlib import Path

from ir.errors import UnknownModelError
from zoo.cache import model_file
from zoo.catalog import ZOO


def resolve_model(spec: str) -> Path:
    """The file for MODEL: an existing path, a zoo name, or a one-line UnknownModelError."""
    path = Path(spec)
    if path.exists():
        return path
    entry = ZOO.get(spec)
    if entry is not None:
        return model_file(entry)
    if path.suffix == ".onnx" or "/" in spec:
        # Looks like a path: let the loader report the missing file with its usual message.
        return path
    raise UnknownModelError(
        f"'{spec}': no such file and no zoo model of that name (see `runner zoo list`; "
        f"known: {', '.join(sorted(ZOO))})"
    )
