"""ONNX's backend API over targets, and ONNX's node test cases run through it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from ir.errors import AsicperfError
from targets.conformance import backend_for, failing_ops, run_node_tests
from targets.conformance.__main__ import main
from targets.conformance.document import json_path
from targets.conformance.node_tests import Status, node_cases, outputs_mismatch
from targets.onnxruntime_target import OnnxRuntimeSession
from targets.reference_target import ReferenceTarget

DOCS = Path(__file__).resolve().parent.parent / "docs" / "conformance.md"
FEW_OPS = [("", op) for op in ("Relu", "Add", "Conv", "MatMul", "Softmax")]


@pytest.mark.parametrize("target", ["reference", "onnxruntime"])
def test_node_cases_of_common_ops_pass(target):
    report = run_node_tests(target, FEW_OPS)
    assert report.failures == ()
    assert report.count(Status.PASS) >= 25
    assert {(s.domain, s.op_type) for s in report.op_summaries()} == set(FEW_OPS)
    assert all(s.passed == s.total for s in report.op_summaries())
    assert report.pass_rate == 1.0
    assert failing_ops(report) == frozenset()


def test_onnxruntime_claims_constant_and_function_ops_it_expands():
    """Its claims are its CPU kernels plus what it expands (Constant, ONNX functions), so
    Softmax's expanded cases (function bodies with Constant) run too, and pass."""
    report = run_node_tests("onnxruntime", [("", "Softmax")])
    assert {(r.status, r.expanded) for r in report.results} == {
        (Status.PASS, False),
        (Status.PASS, True),
    }


def test_unclaimed_ops_and_dtypes_are_skipped_with_the_reason():
    report = run_node_tests("fake_targets:PartialTarget", [("", "Relu"), ("", "Softmax")])
    softmax = [r for r in report.results if r.op_type == "Softmax" and not r.expanded]
    assert softmax and all(r.status == Status.SKIPPED for r in softmax)
    assert {r.reason for r in softmax} == {"op Softmax is not claimed: Softmax is not supported"}
    assert report.target == "partial"
    assert [s.op_type for s in report.op_summaries()] == ["Relu"]

    add = run_node_tests("fake_targets:PartialTarget", [("", "Add")])
    by_name = {r.name: r for r in add.results}
    assert by_name["test_add"].status == Status.PASS
    assert by_name["test_add_uint8"].status == Status.SKIPPED
    assert by_name["test_add_uint8"].reason == (
        "op Add is not claimed: Add on uint8 is not supported"
    )


def test_a_target_with_wrong_outputs_fails_with_a_reason(monkeypatch):
    real_run = OnnxRuntimeSession.run

    def zeros(self, feeds):
        return [np.zeros_like(output) for output in real_run(self, feeds)]

    monkeypatch.setattr(OnnxRuntimeSession, "run", zeros)
    report = run_node_tests("onnxruntime", [("", "Relu")])
    (relu,) = [r for r in report.results if r.name == "test_relu"]
    assert relu.status == Status.FAIL
    assert relu.reason.startswith("output 0: ") and "values differ" in relu.reason
    assert failing_ops(report) == {("", "Relu")}
    assert report.pass_rate == 0.0
    assert report.to_json()["failing_ops"] == ["Relu"]


def test_compile_and_run_exceptions_are_recorded_by_stage(monkeypatch):
    def broken_compile(self, model, config):
        raise AsicperfError("no backend for this today")

    monkeypatch.setattr(ReferenceTarget, "compile", broken_compile)
    report = run_node_tests("reference", [("", "Relu")])
    assert {r.status for r in report.results} == {Status.ERROR}
    assert {r.reason for r in report.results} == {"compile: no backend for this today"}

    monkeypatch.undo()
    monkeypatch.setattr(OnnxRuntimeSession, "run", lambda self, feeds: 1 / 0)
    report = run_node_tests("reference", [("", "Relu")])
    assert {r.reason for r in report.results} == {"run: division by zero"}
    assert {r.status for r in report.results} == {Status.FAIL}


def test_run_node_and_run_model():
    backend = backend_for("reference")
    x = np.array([[-1.0, 2.0], [3.0, -4.0]], dtype=np.float32)
    (y,) = backend.run_node(onnx.helper.make_node("Relu", ["x"], ["y"]), [x])
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    add = onnx.helper.make_node("Add", ["a", "b"], ["c"])
    (c,) = backend.run_node(add, {"a": x, "b": x}, opset_version=13)
    np.testing.assert_array_equal(c, 2 * x)
    (c,) = backend.run_node(add, [x, x], outputs_info=[(np.float32, (2, 2))])
    np.testing.assert_array_equal(c, 2 * x)

    case = next(c for c in node_cases() if c.case.name == "test_matmul_2d").case
    rep = backend_for("onnxruntime").prepare(case.model)
    (inputs, (expected,)) = case.data_sets[0]
    np.testing.assert_allclose(rep.run(list(inputs))[0], expected, rtol=1e-5)
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")


def test_backend_options_come_from_the_spec_or_prepare():
    backend = backend_for("onnxruntime{threads=1 optimization=disable}")
    assert backend.config.threads == 1 and backend.config.optimization == "disable"
    case = next(c for c in node_cases() if c.case.name == "test_relu").case
    assert backend.prepare(case.model, optimization="basic") is not None
    with pytest.raises(AsicperfError, match="has no option speed"):
        backend.prepare(case.model, speed=3)
    with pytest.raises(AsicperfError, match="unknown option 'speed'"):
        backend_for("onnxruntime{speed=3}")
    with pytest.raises(AsicperfError, match="unknown target"):
        backend_for("no-such-target")


def test_outputs_are_compared_like_onnx_runner():
    case = next(c for c in node_cases() if c.case.name == "test_relu").case  # rtol 1e-3
    floats = np.array([1.0, np.nan, np.inf], dtype=np.float32)
    assert outputs_mismatch([floats], [floats * (1 + 1e-4)], case) is None
    assert "1/3 values differ" in outputs_mismatch([floats], [floats * 1.01], case)
    ints = np.array([1000, 2000], dtype=np.int64)
    assert "exact match" in outputs_mismatch([ints], [ints + 1], case)
    assert outputs_mismatch([ints], [ints.astype(np.int32)], case) == (
        "output 0: dtype int32, expected int64"
    )
    assert outputs_mismatch([ints], [ints[:1]], case) == "output 0: shape (1,), expected (2,)"
    strings = np.array(["a", "b"], dtype=object)
    assert outputs_mismatch([strings], [np.array(["a", "c"], dtype=object)], case) is not None
    assert outputs_mismatch([[ints, ints]], [[ints, ints]], case) is None
    assert "sequence of 1" in outputs_mismatch([[ints, ints]], [[ints]], case)
    assert outputs_mismatch([None], [None], case) is None
    assert outputs_mismatch([None], [ints], case) is not None
    assert outputs_mismatch([ints], [], case) == "0 outputs, expected 1"


def test_main_writes_the_page_and_json(tmp_path, monkeypatch):
    few = tuple(c for c in node_cases() if c.op in FEW_OPS)
    monkeypatch.setattr("targets.conformance.node_tests.node_cases", lambda: few)
    out = tmp_path / "docs" / "conformance.md"
    assert main(["reference", "onnxruntime{threads=1}", "--out", str(out)]) == 0
    page = out.read_text()
    assert "| `reference` |" in page and "| `onnxruntime{threads=1}` |" in page
    assert "### reference (0 ops)" in page
    document = json.loads(json_path(out, "onnxruntime").read_text())
    assert document["spec"] == "onnxruntime{threads=1}"
    assert document["failed"] == 0 and document["pass_rate"] == 1.0
    assert main(["no-such-target", "--out", str(out)]) == 2


@pytest.mark.slow
def test_onnxruntime_passes_at_least_the_documented_rate():
    documented = json.loads(json_path(DOCS, "onnxruntime").read_text())
    report = run_node_tests("onnxruntime")
    assert report.count(Status.PASS) / report.ran() >= documented["passed"] / documented["run"]
    assert failing_ops(report) <= {
        tuple(op.split("::")) if "::" in op else ("", op) for op in documented["failing_ops"]
    }
