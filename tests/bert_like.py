"""A small BERT-style encoder built the way torch exports one, for the fusion-pass tests.

Embeddings (word + position Gather), then per layer: Q/K/V MatMul + Add, head split
(Reshape to [batch, seq, heads, head] with a Shape/Gather/Unsqueeze/Concat shape, Transpose),
scores MatMul with K transposed, Div by sqrt(head), Add of the extended mask
(1 - mask) * -10000, Softmax, MatMul with V, head merge, output projection, residual,
decomposed LayerNorm (ReduceMean/Sub/Pow/.../Div/Mul/Add) and a decomposed-GELU FFN. Counts:
`layers` attention blocks and GELUs, 2 * layers + 1 LayerNorms. Weights come from a seed.

Also the small helpers the fusion tests share: a graph from nodes and constants, loading it the
way the toolkit loads a file, and the numeric comparison of outputs before and after a pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
from onnx import TensorProto, helper, numpy_helper

from ir.drift import output_drift
from ir.model_io import load_model
from ir.reference import run_reference
from ir.seeded_inputs import seeded_inputs
from zoo.builders.bert import build_bert


def build_bert_like(
    opset: int = 14,
    layers: int = 2,
    *,
    hidden: int = 64,
    heads: int = 4,
    seq: int | str = 16,
    batch: int | str = "batch",
    vocab: int = 32,
    gelu: str = "erf",
    seed: int = 0,
) -> onnx.ModelProto:
    """The zoo's BERT builder at test size: inputs `input_ids` and `attention_mask` (int64
    [batch, seq]), output `last_hidden_state`; `gelu` is "erf" or "tanh"."""
    return build_bert(
        layers=layers,
        hidden=hidden,
        heads=heads,
        seq=seq,
        batch=batch,
        vocab=vocab,
        opset=opset,
        gelu=gelu,
        seed=seed,
    )


def bert_like_feeds(
    batch: int = 2, seq: int = 16, vocab: int = 32, seed: int = 0
) -> dict[str, np.ndarray]:
    """Token ids in range and a 0/1 mask that keeps at least the first token of every row."""
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, 2, size=(batch, seq))
    mask[:, 0] = 1
    return {"input_ids": rng.integers(0, vocab, size=(batch, seq)), "attention_mask": mask}


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, Sequence[int | str]],
    outputs: Sequence[str],
    constants: Mapping[str, np.ndarray] | None = None,
    opset: int = 14,
    elem_type: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    """A model with graph inputs by name and shape and outputs by name, all of `elem_type`, and
    constants as initializers."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(n, elem_type, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(name, elem_type, None) for name in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in (constants or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def load(proto: onnx.ModelProto, folder: Path) -> oir.Model:
    """`proto` saved in `folder` and loaded as any file is: inferred shapes, stable ids."""
    path = folder / "model.onnx"
    onnx.save(proto, path)
    return load_model(path)


def outputs_of(model: oir.Model, feeds: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """The model's outputs on `feeds` (default: seeded random inputs) with the reference path."""
    return run_reference(model, feeds if feeds is not None else seeded_inputs(model))


def assert_close(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray]) -> None:
    """Same outputs within fusion tolerance: cosine >= 0.99999 and rtol 1e-4 (atol 1e-5)."""
    assert len(expected) == len(actual)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert output_drift(index, want, got).cosine >= 0.99999
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
