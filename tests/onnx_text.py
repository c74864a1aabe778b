"""Test helper: a model written in ONNX's text format, saved and loaded through the IR."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir as oir

from ir.model_io import load_model


def load_onnx_text(tmp_path: Path, text: str) -> oir.Model:
    path = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(text), path)
    return load_model(path)
