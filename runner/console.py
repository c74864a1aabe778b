"""The rich console the commands print tables with: created per call so output follows the
current stdout (tests capture it), and wide enough when piped to a file."""

from __future__ import annotations

import sys

from rich.console import Console

_PIPED_WIDTH = 160


def console() -> Console:
    stream = sys.stdout
    width = None if stream.isatty() else _PIPED_WIDTH
    return Console(file=stream, width=width, highlight=False)
