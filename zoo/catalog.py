"""Every zoo model, found by reading `zoo/builders/`: a builder module lists its entries in a
module-level `MODELS` tuple, so adding a model is adding a file. The "light" ImageNet models
that ship in the onnx wheel's test data (weights replaced by fills) are entries too."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import onnx.backend.test

import zoo.builders
from zoo.model import ZooModel

_ONNX_LIGHT_DIR = Path(onnx.backend.test.__file__).parent / "data" / "light"


def _onnx_light_models() -> list[ZooModel]:
    return [
        ZooModel(
            name="onnx-" + file.stem.replace("_", "-"),
            category="regular",
            task="image classification",
            dataset="seeded synthetic images (weights are fills)",
            metric="output drift vs reference",
            file=file,
        )
        for file in sorted(_ONNX_LIGHT_DIR.glob("light_*.onnx"))
    ]


def _built_models() -> list[ZooModel]:
    found = []
    for module_info in pkgutil.iter_modules(zoo.builders.__path__):
        module = importlib.import_module(f"zoo.builders.{module_info.name}")
        found.extend(getattr(module, "MODELS", ()))
    return found


def _catalog() -> dict[str, ZooModel]:
    entries: dict[str, ZooModel] = {}
    for entry in [*_built_models(), *_onnx_light_models()]:
        if entry.name in entries:
            raise RuntimeError(f"two zoo models are named '{entry.name}'")
        entries[entry.name] = entry
    return dict(sorted(entries.items()))


ZOO: dict[str, ZooModel] = _catalog()
