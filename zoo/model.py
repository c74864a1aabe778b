"""What the zoo knows about a model: how to get it, what it is for, how it is scored."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx

# ByteMLPerf's grouping: regular (classic CV/NLP), business (recommenders, speech in
# production), SOTA (recent large architectures).
Category = Literal["regular", "business", "SOTA"]


@dataclass(frozen=True)
class ZooModel:
    """A zoo entry: built by `builder(**options)` (cached by name, version and options) or
    read from `file`."""

    name: str
    category: Category
    task: str
    dataset: str
    metric: str
    builder: Callable[..., onnx.ModelProto] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1  # bump when the builder's output changes, so caches rebuild
    file: Path | None = None
    requires: tuple[str, ...] = ()  # importable packages it needs
    # Smaller options that keep the architecture, for the fast test that builds every entry.
    test_options: Mapping[str, Any] = field(default_factory=dict)

    def unavailable(self) -> str | None:
        """Why the model cannot be had on this machine, or None."""
        missing = [name for name in self.requires if importlib.util.find_spec(name) is None]
        return f"needs {', '.join(missing)} (pip install ...)" if missing else None
