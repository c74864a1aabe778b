"""Peak resident memory of this process over one block of work (one LLM run).

The OS keeps a process's peak resident set size (Linux: VmHWM in /proc/self/status), but over
the process's whole life, so a run after a bigger one would report the bigger one's peak.
Linux lets a process reset it: writing "5" to /proc/self/clear_refs sets the peak to the
current resident size (Linux 4.0 and later). `PeakRss` resets it on entry and reads it on exit,
so its figure is the highest resident size during the block, the memory held before the
block included.

Before the reset, memory the process no longer uses is handed back: a garbage collection (a
compiled model's objects can sit in reference cycles) and glibc's `malloc_trim`, which returns
freed heap to the OS; without them a run would carry what compiling freed but the allocator
kept, hundreds of megabytes for an LLM, and its figure would not be the run's.

Where the peak cannot be reset (no /proc, as on macOS or Windows, an older kernel, or a
sandbox that refuses the write) the figure is None: the lifetime peak, which
`resource.getrusage` would give, is not this block's and would mislead.
"""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path
from types import TracebackType

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")
RESET_PEAK_RSS = "5"  # clear_refs' command: peak RSS := current RSS
BYTES_PER_KB = 1024  # /proc's "kB" is KiB


def release_free_memory() -> None:
    """Collect garbage, and where the C library is glibc, return its freed heap to the OS."""
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to trim
        return
    libc.malloc_trim(0)


def reset_peak_rss() -> bool:
    """Set this process's peak resident size to its current one; False where it cannot be."""
    try:
        CLEAR_REFS.write_text(RESET_PEAK_RSS)
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int | None:
    """This process's peak resident size since its start or the last reset (VmHWM), in
    bytes; None where /proc does not give it."""
    try:
        lines = STATUS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()  # "VmHWM:", its size, "kB"
        if fields[:1] == ["VmHWM:"] and len(fields) == 3 and fields[2] == "kB":
            return int(fields[1]) * BYTES_PER_KB
    return None


class PeakRss:
    """`with PeakRss() as peak:` ... then `peak.bytes`: the peak resident size during the
    block, in bytes; None where the peak could not be reset or read (see the module)."""

    def __init__(self) -> None:
        self.bytes: int | None = None
        self._reset = False

    def __enter__(self) -> PeakRss:
        release_free_memory()
        self._reset = reset_peak_rss()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.bytes = peak_rss_bytes() if self._reset else None
