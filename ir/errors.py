"""Errors caused by the user's input.

The CLI prints any `AsicperfError` as a single line and exits with status 2, so every message
must name what is wrong and where (file, node id, tensor) on one line.
"""

from __future__ import annotations


class AsicperfError(Exception):
    """Base class: a problem with the user's input, not a bug in the toolkit."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ModelLoadError(AsicperfError):
    """The file is missing, is not ONNX, is corrupt, or uses operators nothing can run."""


class UnknownModelError(AsicperfError):
    """A model name is neither an existing path nor a zoo entry."""


class VerificationError(AsicperfError):
    """The IR breaks an invariant (SSA, dangling use, cycle, type mismatch)."""
