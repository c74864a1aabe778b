"""A spinner with the elapsed time on stderr while a command waits on work it cannot follow
step by step (a target compiling in its child process), so a long wait is not silence.

Shown on a terminal only: piped output, logs and `--json` documents stay clean.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from runner.console import terminal_stderr


@contextmanager
def spinner(text: str, *, enabled: bool = True) -> Iterator[None]:
    """Spin with `text` and the elapsed time while the block runs, when `enabled` and stderr is
    a terminal; the line is erased afterwards."""
    stderr = terminal_stderr() if enabled else None
    if stderr is None:
        yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        progress.add_task(text, total=None)
        yield
