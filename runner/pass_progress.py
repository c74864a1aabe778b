"""Progress of `runner passes run` on a terminal: a spinner naming the step under way (loading,
the numeric check's reference run, the pass running) and one line per pass as it completes, so
a pipeline that takes half a minute on BERT-base is not half a minute of silence.

Drawn on stderr, and only when stderr is a terminal: stdout keeps the results, and a log file
or a pipe gets no spinner frames.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.status import Status

from ir.listing import counted
from passes.instruments import Instrument


class PassProgress(Instrument):
    """Put it last among the instruments, so a pass's line comes after its checks ran; with
    no console (stderr not a terminal) it does nothing."""

    def __init__(self, console: Console | None, total: int) -> None:
        self.console = console
        self.total = total
        self._status: Status | None = None
        self._started = 0.0

    def __enter__(self) -> PassProgress:
        if self.console is not None:
            self._status = self.console.status("starting", spinner="dots")
            self._status.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def step(self, text: str) -> None:
        """Say what runs now (`loading MODEL`, `writing OUT`)."""
        if self._status is not None:
            self._status.update(text)

    def before_pass(self, seq, pass_, model):
        self._started = time.perf_counter()
        self.step(f"[{seq}/{self.total}] {pass_.name}")

    def after_pass(self, seq, pass_, model, result):
        if self.console is not None:
            seconds = time.perf_counter() - self._started
            took = f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
            what = counted(len(result.changes), "change") if result.modified else "unchanged"
            self.console.print(
                f"[{seq}/{self.total}] {pass_.name}: {what} ({took})",
                markup=False,
                highlight=False,
            )
        return {}
