"""Built zoo models on disk, keyed by (name, builder version, options): the second run of
anything on a zoo model starts instantly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ir.errors import UnknownModelError
from ir.files import cache_root, write_bytes_atomically
from zoo.model import ZooModel


def cached_path(entry: ZooModel) -> Path:
    key = json.dumps(
        {"name": entry.name, "version": entry.version, "options": dict(entry.options)},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "zoo" / f"{entry.name}-v{entry.version}-{digest}.onnx"


def model_file(entry: ZooModel) -> Path:
    """The entry's ONNX file, building and caching it first if needed."""
    if entry.file is not None:
        return entry.file
    why = entry.unavailable()
    if why is not None:
        raise UnknownModelError(f"zoo model '{entry.name}' is not available here: {why}")
    path = cached_path(entry)
    if not path.is_file():
        assert entry.builder is not None, f"zoo model '{entry.name}' has neither file nor builder"
        write_bytes_atomically(path, entry.builder(**entry.options).SerializeToString())
    return path
