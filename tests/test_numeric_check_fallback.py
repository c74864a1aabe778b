"""The numeric check past the reference path: a pass's output holding an op the reference path
has no kernel for (Gelu below opset 20, as a fusion pass emits it for a target that declares it)
is checked on the bound target, and the record says so; with no target that runs it the pass is
recorded as not checked, with the reason, unless a drift bound needs every pass checked.

The bound target here is the vendor example, imported from its source folder as `module:Class`
(tests/test_vendor_example.py runs it installed, through `runner passes run`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper

from ir.errors import AsicperfError
from ir.model_io import copy_model, load_model
from ir.seeded_inputs import seeded_inputs
from passes.base import Pass, PassLog
from passes.instruments import NumericCheck, PassFailed
from passes.manager import run_pipeline
from passes.rewrite import replace_nodes
from passes.sensitivity import DriftProbe
from targets.reference_fallback import TargetFallback

EXAMPLE_SOURCE = Path(__file__).resolve().parents[1] / "docs/examples/asicperf-example-target/src"
EXAMPLE = "asicperf_example_target.target:NumpyTarget"
NO_GELU = "the reference path has no Gelu at opset 17"
NO_TARGET = f"{NO_GELU}, and no target is given to run it on"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> str:
    """The example target's spec, importable from its source folder."""
    monkeypatch.syspath_prepend(str(EXAMPLE_SOURCE))
    return EXAMPLE


def _chain(tmp_path: Path, *ops: str) -> oir.Model:
    """x[2,3] -> ops[0] (n0) -> ops[1] (n1) ... -> y, at opset 17."""
    names = ["x", *(f"v{i}" for i in range(len(ops) - 1)), "y"]
    edges = zip(ops, names[:-1], names[1:], strict=True)
    nodes = [helper.make_node(op, [a], [b]) for op, a, b in edges]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "g", io[:1], io[1:])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return load_model(path)


class _Swap(Pass):
    """Replaces every `old` node by a default-domain `new` one whatever the opset, as a fusion
    pass does for a target that declares `new`."""

    summary = "test pass"
    old = new = ""

    def run(self, model: oir.Model, log: PassLog) -> None:
        for node in list(model.graph):
            if node.op_type == self.old:
                swapped = oir.Node("", self.new, [node.inputs[0]])
                outputs = {node.outputs[0]: swapped.outputs[0]}
                replace_nodes(log, [node], [swapped], outputs, rule="swap", reason="test")


class ReluToGelu(_Swap):
    name, old, new = "relu-to-gelu", "Relu", "Gelu"


class GeluToRelu(_Swap):
    name, old, new = "gelu-to-relu", "Gelu", "Relu"


class ReluToBadTranspose(Pass):
    """Relu -> Transpose with a perm that repeats an axis: every op is one the reference path
    runs, and the model is broken."""

    name = "relu-to-bad-transpose"
    summary = "test pass"

    def run(self, model: oir.Model, log: PassLog) -> None:
        (relu,) = [node for node in model.graph if node.op_type == "Relu"]
        bad = oir.Node("", "Transpose", [relu.inputs[0]], [oir.AttrInt64s("perm", [0, 0])])
        replace_nodes(log, [relu], [bad], {relu.outputs[0]: bad.outputs[0]}, rule="r", reason="x")


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def test_a_model_the_reference_path_lacks_an_op_for_is_checked_on_the_target(tmp_path, example):
    model = _chain(tmp_path, "Relu", "Tanh")
    x = seeded_inputs(model, 0)["x"]
    check = NumericCheck(runner=TargetFallback(example))
    (record,) = run_pipeline(model, [ReluToGelu()], [check]).records
    assert record.numeric["where"] == f"checked on target '{example}': {NO_GELU}"
    want = np.abs(np.tanh(_gelu(x)) - np.tanh(np.maximum(x, 0))).max()
    assert record.numeric["vs_input"][0]["max_abs"] == pytest.approx(want, rel=1e-5)
    assert record.numeric["vs_previous"] == record.numeric["vs_input"]


def test_a_model_the_target_runs_in_part_says_how_much(tmp_path, example):
    model = _chain(tmp_path, "Relu", "Neg")  # the example has no Neg: it falls back
    check = NumericCheck(runner=TargetFallback(example))
    (record,) = run_pipeline(model, [ReluToGelu()], [check]).records
    assert record.numeric["where"] == (
        f"checked on target '{example}' (1 of 2 nodes; the rest on the reference path): {NO_GELU}"
    )


def test_with_no_target_the_pass_is_not_checked_and_the_pipeline_goes_on(tmp_path):
    model = _chain(tmp_path, "Relu", "Tanh")
    check = NumericCheck(runner=TargetFallback(""))
    gelu, relu = run_pipeline(model, [ReluToGelu(), GeluToRelu()], [check]).records
    assert gelu.numeric == {"seed": 0, "where": f"not checked: {NO_TARGET}"}
    # back to the input model's ops: checked on the reference path again, with no previous
    # figures to compare against
    assert set(relu.numeric) == {"seed", "vs_input"}
    assert relu.numeric["vs_input"][0]["max_abs"] == 0.0


def test_an_input_model_the_reference_path_lacks_an_op_for(tmp_path, example):
    """The input model holds the Gelu: the target runs it, or, with no target, no pass can be
    checked, for want of outputs to compare with."""
    model = _chain(tmp_path, "Relu", "Tanh")
    run_pipeline(model, [ReluToGelu()])
    x = seeded_inputs(model, 0)["x"]
    on_target = NumericCheck(runner=TargetFallback(example))
    (record,) = run_pipeline(copy_model(model), [GeluToRelu()], [on_target]).records
    assert "where" not in record.numeric  # the pass's output ran on the reference path
    want = np.abs(np.tanh(_gelu(x)) - np.tanh(np.maximum(x, 0))).max()
    assert record.numeric["vs_input"][0]["max_abs"] == pytest.approx(want, rel=1e-5)
    nowhere = NumericCheck(runner=TargetFallback(""))
    (record,) = run_pipeline(model, [GeluToRelu()], [nowhere]).records
    assert record.numeric == {
        "seed": 0,
        "where": f"not checked: the input model cannot be run: {NO_TARGET}",
    }


def test_a_target_without_the_op_cannot_check_it_either(tmp_path):
    model = _chain(tmp_path, "Relu", "Tanh")
    check = NumericCheck(runner=TargetFallback("reference"))
    (record,) = run_pipeline(model, [ReluToGelu()], [check]).records
    assert record.numeric["where"] == (
        f"not checked: {NO_GELU}, and target 'reference' runs no Gelu at opset 17 either"
    )


def test_a_drift_bound_makes_an_unchecked_pass_an_error(tmp_path):
    model = _chain(tmp_path, "Relu", "Tanh")
    check = NumericCheck(runner=TargetFallback(""), require_checked=True)
    with pytest.raises(AsicperfError) as caught:
        run_pipeline(model, [ReluToGelu()], [check])
    assert str(caught.value) == (
        "pass 'relu-to-gelu' (#1) could not be checked numerically, so the drift bound cannot "
        f"be verified: {NO_TARGET}"
    )


def test_a_broken_model_of_ops_the_reference_path_has_is_still_the_pass_s_fault(tmp_path, example):
    model = _chain(tmp_path, "Relu", "Tanh")
    check = NumericCheck(runner=TargetFallback(example))
    with pytest.raises(PassFailed, match=r"^pass 'relu-to-bad-transpose' \(#1\) left a model that"):
        run_pipeline(model, [ReluToBadTranspose()], [check])


def test_the_drift_probe_measures_on_the_target_or_refuses(tmp_path, example):
    model = _chain(tmp_path, "Relu", "Tanh")
    fused = copy_model(model)
    run_pipeline(fused, [ReluToGelu()])
    x = seeded_inputs(model, 0)["x"]
    (drift,) = DriftProbe(model, runner=TargetFallback(example)).drift(fused)
    want = np.abs(np.tanh(_gelu(x)) - np.tanh(np.maximum(x, 0))).max()
    assert drift["max_abs"] == pytest.approx(want, rel=1e-5)
    with pytest.raises(AsicperfError) as caught:
        DriftProbe(model, runner=TargetFallback("")).drift(fused)
    assert str(caught.value) == f"cannot measure the drift of the pipeline's output: {NO_TARGET}"
