"""A failure of the session being measured, kept until it can be raised.

LoadGen calls the SUT from its own thread and waits for every sample it issued, so an
exception cannot simply propagate out of the session: it is recorded, the run is let finish,
and the failure is raised afterwards (sut.py). The warm-up raises its failures the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ir.errors import AsicperfError, first_line


@dataclass(frozen=True)
class SessionFailure:
    """What failed (e.g. "batch 3 under LoadGen") and the exception it raised."""

    what: str
    error: BaseException

    def as_error(self) -> BaseException:
        """A one-line AsicperfError, or the KeyboardInterrupt itself: an interrupt is the
        user's wish to stop, not a problem to report."""
        if isinstance(self.error, KeyboardInterrupt):
            return self.error
        kind = type(self.error).__name__
        error = AsicperfError(f"{self.what} failed: {kind}: {first_line(self.error)}")
        error.__cause__ = self.error  # a traceback still shows where the session failed
        return error
