"""Size and cost of a zoo model (parameters, FLOPs at batch 1, input shapes), kept in the
cache so `runner zoo list` neither rebuilds nor loads anything (loading imports onnx)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ir.files import cache_root, write_text_atomically

BATCH_BINDING = {"batch": 1}


@dataclass(frozen=True)
class ModelStats:
    params: int
    flops: int  # at batch 1
    inputs: dict[str, str]  # name -> "f32[batch,3,224,224]"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _sidecar(path: Path) -> Path:
    """Beside a file of the zoo's cache; for a file the zoo does not own (the onnx wheel's
    light models), in the cache's `zoo/stats` folder, under a key that changes with the file."""
    if path.parent == cache_root() / "zoo":
        return path.with_name(path.name + ".stats.json")
    stat = path.stat()
    source = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    return cache_root() / "zoo" / "stats" / f"{path.stem}-{key}.stats.json"


def measure(path: Path) -> ModelStats:
    """Stats at batch 1. Dims ONNX's inference leaves unnamed (`unk__0`, from shape chains that
    start at the batch dim) are taken as batch too: every other dim of a zoo model is static."""
    from ir.listing import summarize
    from ir.model_io import load_model

    model = load_model(path, bindings=BATCH_BINDING)
    symbolic = {
        str(dim.value)
        for graph in model.graphs()
        for node in graph
        for value in node.outputs
        if value.shape is not None
        for dim in value.shape
        if not isinstance(dim, int)
    }
    summary = summarize(model, dict.fromkeys(symbolic, 1))
    inputs = {v.name: v.short() for v in summary.inputs if not v.initializer}
    return ModelStats(summary.params, summary.flops, inputs)


def stats_for(path: Path, *, compute: bool) -> ModelStats | None:
    """The stats of the zoo model file `path` (computed and stored if asked and missing), or
    None when it is not built."""
    if not path.is_file():
        return None
    sidecar = _sidecar(path)
    if sidecar.is_file():
        return ModelStats(**json.loads(sidecar.read_text()))
    if not compute:
        return None
    stats = measure(path)
    write_text_atomically(sidecar, json.dumps(stats.to_json(), sort_keys=True))
    return stats
