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


def first_line(error: BaseException) -> str:
    """The first line of an exception's text (its type name when it has none)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def root_cause(error: BaseException) -> BaseException:
    """The innermost cause: onnx_ir wraps the real problem in a SerdeError per nesting level."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error
