"""Every zoo model, compiled by the tvm target with the schedule rules, agrees with the reference
target: the small builds in the default set, the full-size ones (and the onnx wheel's models) in
the slow set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ir.model_io import load_model
from ir.seeded_inputs import seeded_inputs
from targets.executable import compile_model
from targets.reference_target import ReferenceTarget
from targets.tvm_target import TvmConfig, TvmTarget
from tests.zoo_small import BUILT, small_build
from zoo.cache import model_file
from zoo.catalog import ZOO

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")

BATCH = 2
DECODER = "smollm2-135m"
# The decoder is compiled with its lengths symbolic (one artifact for prefill and every decode
# step) and fed one consistent decode step: 3 new tokens over 2 cached ones. Its shape operands
# computed from those lengths, its Expands and its CumSums fall back (docs/zoo.md): many
# segments, so its small build takes several seconds.
_DECODE_STEP = {"sequence_length": 3, "past_sequence_length": 2, "total_sequence_length": 5}


def _entries(names: list[str]) -> list:
    return [
        pytest.param(name, marks=pytest.mark.slow) if name == DECODER else name for name in names
    ]


def _assert_tvm_matches_reference(name: str, path: Path) -> None:
    lengths = _DECODE_STEP if name == DECODER else {}
    model = load_model(path, bindings={"batch": BATCH})
    feeds = seeded_inputs(model, bindings={"batch": BATCH, **lengths}, int_high=2)
    executable = compile_model(TvmTarget(), model, TvmConfig(cache=False))  # not the user's
    schedules = [
        schedule
        for target, compiled in executable.pieces
        if target.name == "tvm"
        for schedule in compiled.record.extra["schedules"]
    ]
    if name == DECODER:  # every kernel has a loop over a symbolic length, which the rules decline
        assert executable.plan.flop_coverage == 1.0, executable.plan.unsupported
        assert all(s["rule"] == "default" for s in schedules)
        assert all("dynamic extent" in s["detail"] for s in schedules if "matmul" in s["function"])
    else:
        assert {s["rule"] for s in schedules} - {"default"}, "no function was scheduled by a rule"
    actual = executable.session(BATCH).run(feeds)
    expected = compile_model(ReferenceTarget(), model).session(BATCH).run(feeds)
    for want, got in zip(expected, actual, strict=True):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("name", _entries(BUILT))
def test_small_build_matches_reference(name: str, tmp_path: Path) -> None:
    _assert_tvm_matches_reference(name, small_build(name, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO))
def test_full_model_matches_reference(name: str) -> None:
    entry = ZOO[name]
    if entry.unavailable():
        pytest.skip(entry.unavailable())
    _assert_tvm_matches_reference(name, model_file(entry))
