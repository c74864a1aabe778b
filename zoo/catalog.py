"""Zoo entries that need no download.

For now the zoo holds the "light" ImageNet models that ship inside the onnx wheel's backend test
data (`onnx/backend/test/data/light`): the real architectures with their weights replaced by
ConstantOfShape fills, so the files are a few kilobytes. They make a default model for every
command on a fresh machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx.backend.test

_ONNX_LIGHT_DIR = Path(onnx.backend.test.__file__).parent / "data" / "light"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    source: str
    file: Path


def _onnx_light_models() -> dict[str, ZooEntry]:
    entries = {}
    for file in sorted(_ONNX_LIGHT_DIR.glob("light_*.onnx")):
        name = "onnx-" + file.stem.replace("_", "-")
        entries[name] = ZooEntry(name, "onnx wheel backend test data (weights are fills)", file)
    return entries


ZOO: dict[str, ZooEntry] = _onnx_light_models()
