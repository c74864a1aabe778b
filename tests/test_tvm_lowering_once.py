"""The tvm target lowers a model once per compile: `prepare` lowers it so the claims are checked
on what TVM will see, and `compile` builds the model `prepare` returned as it is. Its compile
record still gives the lowering's pass records and the op counts before and after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as oir
import pytest

import targets.tvm_compiler as tvm_compiler
from ir.fingerprint import fingerprint
from ir.seeded_inputs import seeded_inputs
from targets.executable import compile_model
from targets.tvm_target import TvmConfig, TvmTarget
from tests.onnx_text import load_onnx_text

pytest.importorskip("tvm", reason="apache-tvm is not installed")

# Identity -> MatMul -> Relu: the lowering removes the Identity and nothing else.
_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 3] x) => (float[2, 4] y) <float[3, 4] w = {1,2,3,4,5,6,7,8,9,10,11,12}> {
    i = Identity(x)
    m = MatMul(i, w)
    y = Relu(m)
}
"""
_PASSES = ["fold-constants", "fuse-conv-bn", "recognize-layernorm", "remove-identity", "dce"]


@pytest.fixture
def lowerings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[oir.Model]:
    """The models `tvm_compiler.lower` is called on, while it still lowers them."""
    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path / "cache"))
    seen: list[oir.Model] = []
    real = tvm_compiler.lower

    def counted(model: oir.Model) -> tuple[oir.Model, tvm_compiler.Lowering]:
        seen.append(model)
        return real(model)

    monkeypatch.setattr(tvm_compiler, "lower", counted)
    return seen


def _model(tmp_path: Path) -> oir.Model:
    return load_onnx_text(tmp_path, _TEXT)


def test_compile_model_lowers_once_and_records_the_lowering(
    lowerings: list[oir.Model], tmp_path: Path
) -> None:
    model = _model(tmp_path)
    executable = compile_model(TvmTarget(), model)

    assert lowerings == [model]
    record = executable.pieces[0][1].record
    assert [r["pass"] for r in record.extra["lowering"]] == _PASSES
    assert (record.in_fingerprint, record.node_count) == (fingerprint(model), (3, 2))
    assert [c.reason for c in record.changes] == [f"{tvm_compiler.LOWERING}: Identity 1 -> 0"]
    feeds = seeded_inputs(model)
    (y,) = executable.session().run(feeds)
    weights = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(y, np.maximum(feeds["x"] @ weights, 0), rtol=1e-5)


def test_a_model_prepare_did_not_return_is_lowered_by_compile(
    lowerings: list[oir.Model], tmp_path: Path
) -> None:
    model = _model(tmp_path)
    direct = TvmTarget().compile(model, TvmConfig())
    assert lowerings == [model]
    via_prepare = compile_model(TvmTarget(), model).pieces[0][1]
    assert len(lowerings) == 2  # one more, by the new target's prepare
    lowered = [[r["pass"] for r in c.record.extra["lowering"]] for c in (direct, via_prepare)]
    assert lowered == [_PASSES, _PASSES]
    assert direct.record.changes == via_prepare.record.changes
    assert direct.ir_fingerprint == via_prepare.ir_fingerprint == fingerprint(model)
    # The same lowered model, so the same library: the second build is a cache hit.
    assert direct.record.extra["cache_path"] == via_prepare.record.extra["cache_path"]
    assert via_prepare.cache_hit
