"""The rich consoles the commands print with: created per call so output follows the current
stdout and stderr (tests capture them), and wide enough when piped to a file."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

_PIPED_WIDTH = 160


def console() -> Console:
    stream = sys.stdout
    width = None if stream.isatty() else _PIPED_WIDTH
    return Console(file=stream, width=width, highlight=False)


def terminal_stderr() -> Console | None:
    """A console on stderr when stderr is a terminal (for progress a person watches), else
    None: a log file or a pipe gets no spinner frames."""
    if not sys.stderr.isatty():
        return None
    return Console(file=sys.stderr, highlight=False)


def table(title: str, *columns: str) -> Table:
    """A table whose cells wrap, long words folded, instead of ending in `…`: an option or a
    figure cut short misleads more than a taller table does."""
    made = Table(title=title)
    for column in columns:
        made.add_column(column, overflow="fold")
    return made
