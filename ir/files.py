"""Writing result files so that a failure never leaves a half-written one: write a temp file
beside the target, then rename it over the target (atomic on one filesystem)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ir.errors import AsicperfError


def write_bytes_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())  # the rename must not outlive the data on a power cut
        os.chmod(temp_name, 0o644)  # mkstemp's 0600 is for the temp file, not the result
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes_atomically(path, text.encode("utf-8"))


CACHE_ENV = "ASICPERF_CACHE"


def cache_root() -> Path:
    """Where built models, compiled artifacts and host measurements are kept:
    $ASICPERF_CACHE, else ~/.cache/asicperf."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "asicperf"


class OutputError(AsicperfError):
    """An output path that cannot be written: checked before any work, so a long run never
    ends in a traceback with nothing saved."""


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """`path` can be written as a file: it is not a folder, and the nearest existing folder on
    its way accepts a new file (tried with a probe file, as permissions alone mislead root and
    /proc). Raises OutputError naming `what` (the option) and the path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path}: is a folder, expected a file path")
    _check_creatable(path.parent, path, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {path}: file is not writable")
    return path


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """`path` is or can become a folder that accepts files; see check_output_file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path}: is a file, expected a folder")
    _check_creatable(path, path, what)
    return path


def _check_creatable(folder: Path, path: Path, what: str) -> None:
    """The nearest existing ancestor of `folder` (itself included) is a folder we can create a
    file in; nothing is left behind."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what} {path}: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".asicperf-probe.")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputError(f"{what} {path}: cannot write in {existing} ({reason})") from None
    os.close(handle)
    Path(probe).unlink(missing_ok=True)
