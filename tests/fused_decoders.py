"""A decoder before and after decoder fusions, run on onnxruntime side by side: the same prefill
on a left-padded batch, and greedy generation through zoo/llm/session_generation.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir

from ir.model_io import load_model
from passes.base import Pass
from targets.executable import compile_model
from targets.registry import get_target
from zoo.llm.decoder_io import decoder_signature
from zoo.llm.session_generation import PromptBatch, SessionGenerator, left_padded, prefill_feeds

# Two prompts of different lengths: the shorter row is padded on the left.
PADDED = left_padded([[9, 4, 33], [5, 17, 3, 42, 8]], pad_id=0)


def saved(proto: onnx.ModelProto, folder: Path) -> tuple[oir.Model, Path]:
    """`proto` saved in `folder` and loaded as any file is (inferred shapes, node ids)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "decoder.onnx"
    onnx.save(proto, path)
    return load_model(path), path


def fused(proto: onnx.ModelProto, folder: Path, passes: Sequence[Pass]) -> oir.Model:
    """`proto` loaded and rewritten by `passes` in order, each of which must change it."""
    model, _ = saved(proto, folder)
    for rewrite in passes:
        assert rewrite(model).modified, rewrite.name
    return model


def generator(model: oir.Model, path: Path) -> SessionGenerator:
    """Greedy generation of `model` (whose cache layout is read from the file at `path`) on
    onnxruntime."""
    executable = compile_model(get_target("onnxruntime"), model)
    return SessionGenerator(
        executable.session(PADDED.batch_size),
        executable.output_names,
        decoder_signature(model, str(path)),
    )


def prefill(model: oir.Model, path: Path, batch: PromptBatch = PADDED) -> dict[str, np.ndarray]:
    """Every output of one prefill call of `model` on `batch` on onnxruntime, by name: from an
    empty cache, positions counting real tokens (as the generation loop feeds them)."""
    feeds = prefill_feeds(decoder_signature(model, str(path)), batch)
    executable = compile_model(get_target("onnxruntime"), model)
    outputs = executable.session(batch.batch_size).run(feeds)
    return dict(zip(executable.output_names, outputs, strict=True))


def greedy(generator: SessionGenerator, steps: int, batch: PromptBatch = PADDED) -> np.ndarray:
    """The tokens [batch, steps] greedy generation picks."""
    return np.concatenate(list(generator.generate(batch, steps)), axis=1)


def op_counts(model: oir.Model) -> Counter[str]:
    """Nodes per op type, contrib ops as domain.op_type."""
    return Counter(
        f"{node.domain}.{node.op_type}" if node.domain else node.op_type for node in model.graph
    )
