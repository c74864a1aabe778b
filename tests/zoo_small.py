"""Test helper: a zoo entry built with its small test options (same architecture, tiny sizes)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from zoo.catalog import ZOO

BUILT = [name for name, entry in ZOO.items() if entry.builder is not None]


def small_build(name: str, folder: Path) -> Path:
    """The saved small build of `name`; skips the test when the entry's packages are missing."""
    entry = ZOO[name]
    if entry.unavailable():
        pytest.skip(entry.unavailable())
    assert entry.builder is not None
    path = folder / f"{name}.onnx"
    onnx.save(entry.builder(**{**entry.options, **entry.test_options}), path)
    return path
