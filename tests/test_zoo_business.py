"""The business-category builders (Wide&Deep, Conformer): valid, runnable, deterministic, and
the parameter counts their architectures imply."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from ir.model_io import load_model
from ir.reference import run_reference
from ir.seeded_inputs import seeded_inputs
from ir.verifier import verify
from zoo.builders import conformer, wide_deep
from zoo.catalog import ZOO
from zoo.model import ZooModel

ENTRIES = [ZOO["wide-deep"], ZOO["conformer"]]


def _built(entry: ZooModel) -> onnx.ModelProto:
    assert entry.builder is not None
    return entry.builder(**entry.options, **entry.test_options)


def _parameter_count(model: onnx.ModelProto) -> int:
    """Float initializer elements, less 0-d constants (eps, 0.5, ...) and the fixed position
    table, which are not learned."""
    return sum(
        int(np.prod(tensor.dims))
        for tensor in model.graph.initializer
        if tensor.data_type == onnx.TensorProto.FLOAT
        and tensor.dims
        and not tensor.name.startswith("positional_encoding")
    )


@pytest.mark.parametrize(
    ("entry", "shape"),
    [
        pytest.param(ZOO["wide-deep"], (3, 1), id="wide-deep"),
        pytest.param(ZOO["conformer"], (3, 32 // 4, 32), id="conformer"),  # frames 32, hidden 32
    ],
)
def test_builds_a_valid_runnable_model(
    entry: ZooModel, shape: tuple[int, ...], tmp_path: Path
) -> None:
    path = tmp_path / f"{entry.name}.onnx"
    onnx.save(_built(entry), path)
    model = load_model(path)
    assert verify(model) == []
    (output,) = run_reference(model, seeded_inputs(model, bindings={"batch": 3}))
    assert output.shape == shape
    assert np.isfinite(output).all()


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.name)
def test_build_is_deterministic(entry: ZooModel) -> None:
    assert _built(entry).SerializeToString() == _built(entry).SerializeToString()


def test_wide_deep_probabilities_lie_in_0_1(tmp_path: Path) -> None:
    path = tmp_path / "wide-deep.onnx"
    onnx.save(_built(ZOO["wide-deep"]), path)
    model = load_model(path)
    (output,) = run_reference(model, seeded_inputs(model, bindings={"batch": 8}))
    assert ((output > 0) & (output < 1)).all()


def _wide_deep_parameters() -> int:
    fields, vocab, embedding, dense = 26, 100_000, 16, 13
    tables = fields * vocab * (1 + embedding)  # wide [rows, 1] + deep [rows, 16]
    wide_linear = dense + 1
    widths = [fields * embedding + dense, 1024, 512, 256, 1]
    mlp = sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(widths))
    return tables + wide_linear + mlp


def _conformer_parameters() -> int:
    hidden, layers, kernel, ff, bins = 256, 12, 31, 1024, 80 // 4
    subsampling = (9 * hidden + hidden) + (9 * hidden * hidden + hidden)
    subsampling += hidden * bins * hidden + hidden
    layer_norm = 2 * hidden
    ffn = layer_norm + (hidden * ff + ff) + (ff * hidden + hidden)
    attention = layer_norm + 4 * (hidden * hidden + hidden)
    conv = layer_norm + (hidden * 2 * hidden + 2 * hidden)  # pointwise to GLU's two halves
    conv += hidden * kernel + hidden  # depthwise
    conv += 4 * hidden  # BatchNorm scale, bias, running mean and variance
    conv += hidden * hidden + hidden  # pointwise
    return subsampling + layers * (2 * ffn + attention + conv + layer_norm)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (wide_deep.build_wide_deep, _wide_deep_parameters()),
        (conformer.build_conformer, _conformer_parameters()),
    ],
    ids=["wide-deep", "conformer"],
)
def test_full_size_parameter_count(build: Callable[[], onnx.ModelProto], expected: int) -> None:
    # Full size builds in about 5 s (wide-deep) and 1 s (conformer), fast enough to stay unmarked.
    assert _parameter_count(build()) == expected


def test_full_size_counts_match_the_architecture() -> None:
    assert _wide_deep_parameters() == 45_296_719
    assert _conformer_parameters() == 20_185_088
