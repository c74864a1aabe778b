"""Writing workload files with one field changed, and reading their one-line load errors, for
the model-level and LLM workload tests alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ir.errors import AsicperfError


def load_error(load: Callable[[Path], object], path: Path) -> str:
    """What `load` says of the file at `path`: one line, starting with the path, which is
    removed."""
    with pytest.raises(AsicperfError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message
    prefix = f"{path}: "
    assert message.startswith(prefix)
    return message.removeprefix(prefix)


def replaced(text: str, field: str, value: str) -> str:
    """The TOML `text` with `field`'s line replaced by `field = value`, at the end."""
    lines = [line for line in text.splitlines() if not line.startswith(f"{field} =")]
    return "\n".join([*lines, f"{field} = {value}"]) + "\n"
