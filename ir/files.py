"""Writing result files so that a failure never leaves a half-written one: write a temp file
beside the target, then rename it over the target (atomic on one filesystem)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
