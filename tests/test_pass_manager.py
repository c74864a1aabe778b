"""The pass infrastructure: pipeline specs, the pass promise, instruments, audit records, traces."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper

from ir.model_io import load_model
from ir.node_ids import origin_ids, provenance
from passes.audit import ChangeKind, PassRecord, read_audit, trace_origin, write_audit
from passes.base import Pass, PassConfig, PassLog
from passes.instruments import DebugPrint, DumpIR, NumericCheck, PassFailed, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import PipelineError, make_config, parse_pipeline, split_options
from passes.rewrite import replace_nodes


def _neg_neg_relu(tmp_path: Path) -> oir.Model:
    """x -> Neg (n0) -> Neg (n1) -> Relu (n2) -> y."""
    graph = helper.make_graph(
        [
            helper.make_node("Neg", ["x"], ["a"], name="neg1"),
            helper.make_node("Neg", ["a"], ["b"], name="neg2"),
            helper.make_node("Relu", ["b"], ["y"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return load_model(path)


class CancelDoubleNeg(Pass):
    """Neg(Neg(x)) -> Identity(x)."""

    name = "cancel-double-neg"
    summary = "test pass"

    def run(self, model: oir.Model, log: PassLog) -> None:
        for node in list(model.graph):
            if node.op_type != "Neg":
                continue
            inner = node.inputs[0].producer()
            if inner is None or inner.op_type != "Neg":
                continue
            identity = oir.Node("", "Identity", [inner.inputs[0]])
            replace_nodes(
                log,
                [inner, node],
                [identity],
                {node.outputs[0]: identity.outputs[0]},
                rule="neg-neg",
                reason="Neg of Neg is the identity",
            )


class ReluToSigmoid(Pass):
    """Relu -> Sigmoid: changes the numbers on purpose."""

    name = "relu-to-sigmoid"
    summary = "test pass"

    def run(self, model: oir.Model, log: PassLog) -> None:
        for node in list(model.graph):
            if node.op_type == "Relu":
                sigmoid = oir.Node("", "Sigmoid", [node.inputs[0]])
                replace_nodes(
                    log,
                    [node],
                    [sigmoid],
                    {node.outputs[0]: sigmoid.outputs[0]},
                    rule="relu-sigmoid",
                    reason="swap",
                )


class SilentEdit(Pass):
    name = "silent-edit"
    summary = "edits without recording"

    def run(self, model: oir.Model, log: PassLog) -> None:
        next(iter(model.graph)).name = "renamed"


class ClaimsEdit(Pass):
    name = "claims-edit"
    summary = "records an edit it did not make"

    def run(self, model: oir.Model, log: PassLog) -> None:
        log.changed(ChangeKind.ATTRIBUTE, [next(iter(model.graph))], rule="r", reason="none")


class BreakGraph(Pass):
    name = "break-graph"
    summary = "removes a node whose output is still read"

    def run(self, model: oir.Model, log: PassLog) -> None:
        first = next(iter(model.graph))
        log.removed([first], rule="oops", reason="removed a used node")
        model.graph.remove(first)


def test_pipeline_records_every_change_with_provenance(tmp_path):
    model = _neg_neg_relu(tmp_path)
    result = run_pipeline(model, [CancelDoubleNeg()], [VerifyAfterEachPass(), NumericCheck()])
    assert [node.op_type for node in model.graph] == ["Identity", "Relu"]
    identity = next(iter(model.graph))
    assert provenance(identity) == {
        "pass": "cancel-double-neg",
        "rule": "neg-neg",
        "replaces": ["n0", "n1"],
        "origin": ["n0", "n1"],
    }
    (record,) = result.records
    assert record.modified and record.node_count == (3, 2)
    assert [(c.kind, c.nodes, c.replaces) for c in record.changes] == [
        (ChangeKind.ADDED_NODE, ("n3",), ("n0", "n1")),
        (ChangeKind.REMOVED_NODE, ("n0",), ()),
        (ChangeKind.REMOVED_NODE, ("n1",), ()),
    ]
    assert record.rule_counts() == {"neg-neg": 1}
    assert record.in_fingerprint != record.out_fingerprint
    assert record.numeric["vs_input"][0]["max_abs"] == 0.0
    assert record.numeric["vs_input"][0]["cosine"] == pytest.approx(1.0)


def test_numeric_check_measures_drift_against_input_and_previous(tmp_path):
    model = _neg_neg_relu(tmp_path)
    result = run_pipeline(model, [CancelDoubleNeg(), ReluToSigmoid()], [NumericCheck(seed=3)])
    first, second = result.records
    assert first.numeric["vs_input"][0]["max_abs"] == 0.0
    drift = second.numeric["vs_input"][0]
    assert drift["max_abs"] > 0.1 and drift["cosine"] < 0.999
    assert second.numeric["vs_previous"] == second.numeric["vs_input"]
    assert second.numeric["seed"] == 3


def test_unmodified_pass_has_no_numeric_run_and_same_fingerprints(tmp_path):
    model = _neg_neg_relu(tmp_path)
    result = run_pipeline(model, [CancelDoubleNeg(), CancelDoubleNeg()], [NumericCheck()])
    second = result.records[1]
    assert not second.modified and second.changes == ()
    assert second.in_fingerprint == second.out_fingerprint and second.numeric is None


def test_same_pipeline_twice_gives_identical_fingerprints_and_records(tmp_path):
    def run() -> list[dict]:
        model = _neg_neg_relu(tmp_path)
        records = run_pipeline(model, [CancelDoubleNeg(), ReluToSigmoid()], [NumericCheck()])
        return [{**r.to_json(), "wall_ms": 0} for r in records.records]

    assert run() == run()


@pytest.mark.parametrize(
    ("bad_pass", "message"),
    [
        (SilentEdit(), "pass 'silent-edit' (#1) changed the model without recording it"),
        (ClaimsEdit(), "pass 'claims-edit' (#1) recorded changes but left the model unchanged"),
        (BreakGraph(), "pass 'break-graph' (#1) broke the IR: dangling-use"),
    ],
)
def test_a_pass_that_breaks_its_promise_is_named(tmp_path, bad_pass, message):
    model = _neg_neg_relu(tmp_path)
    with pytest.raises(PassFailed) as caught:
        run_pipeline(model, [bad_pass], [VerifyAfterEachPass()])
    assert str(caught.value).startswith(message)


def test_dump_ir_writes_one_listing_per_pass(tmp_path):
    model = _neg_neg_relu(tmp_path)
    run_pipeline(model, [CancelDoubleNeg(), ReluToSigmoid()], [DumpIR(tmp_path / "dump")])
    files = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert files == ["000_input.txt", "001_cancel-double-neg.txt", "002_relu-to-sigmoid.txt"]
    assert "Identity" in (tmp_path / "dump" / "001_cancel-double-neg.txt").read_text()
    assert "Sigmoid" in (tmp_path / "dump" / "002_relu-to-sigmoid.txt").read_text()


@pytest.mark.parametrize(
    ("level", "expected", "absent"),
    [
        (1, "[001] cancel-double-neg: modified=True changes=3 skipped=0", "+  n3"),
        (2, "+  n3  Identity", "inputs"),
        (3, "totals", "---"),
    ],
)
def test_debug_levels(tmp_path, level, expected, absent):
    stream = io.StringIO()
    model = _neg_neg_relu(tmp_path)
    run_pipeline(model, [CancelDoubleNeg()], [DebugPrint(level, stream)])
    assert expected in stream.getvalue()
    assert absent not in stream.getvalue()


def test_debug_level_from_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASICPERF_DEBUG", "1")
    run_pipeline(_neg_neg_relu(tmp_path), [CancelDoubleNeg()])
    assert "[001] cancel-double-neg" in capsys.readouterr().err


def test_audit_log_round_trip_and_trace(tmp_path):
    model = _neg_neg_relu(tmp_path)
    result = run_pipeline(model, [CancelDoubleNeg(), ReluToSigmoid()], [NumericCheck()])
    path = write_audit(tmp_path / "audit.jsonl", result.records)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    for key in ("seq", "pass", "config", "in_fingerprint", "out_fingerprint", "modified"):
        assert key in json.loads(lines[0])
    for key in ("wall_ms", "changes", "skipped", "numeric"):
        assert key in json.loads(lines[0])
    records = read_audit(path)
    assert [r.to_json() for r in records] == [r.to_json() for r in result.records]
    sigmoid = next(node for node in model.graph if node.op_type == "Sigmoid")
    assert origin_ids(sigmoid) == ("n2",)
    (step,) = trace_origin(records, "n4")
    assert step[0].pass_name == "relu-to-sigmoid" and step[1].replaces == ("n2",)
    (step,) = trace_origin(records, "n3")
    assert step[1].replaces == ("n0", "n1")
    assert trace_origin(records, "n2") == []


def test_read_audit_rejects_a_file_that_is_not_an_audit(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(Exception, match=r"x.jsonl:1: not an audit record"):
        read_audit(path)


@dataclass(frozen=True)
class _Options(PassConfig):
    ratio: float = 0.5
    pattern: str = "2:4"
    count: int = 1
    per_layer: bool = False
    exclude: tuple[str, ...] = ()
    mode: Literal["min-max", "entropy"] = "min-max"
    limit: int | None = None


class _Configurable(Pass):
    name = "configurable"
    summary = "test"
    config_type = _Options

    def run(self, model: oir.Model, log: PassLog) -> None:
        raise AssertionError("not run")


def test_options_are_converted_to_field_types():
    config = make_config(
        _Configurable,
        {
            "ratio": "0.25",
            "pattern": "1:16",
            "count": "3",
            "per_layer": "true",
            "exclude": "Softmax,n7",
            "mode": "entropy",
            "limit": "none",
        },
    )
    assert config == _Options(0.25, "1:16", 3, True, ("Softmax", "n7"), "entropy", None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nope": "1"}, "pass 'configurable': unknown option 'nope' (options: ratio, pattern"),
        ({"count": "x"}, "pass 'configurable': option count=x: invalid literal"),
        ({"per_layer": "maybe"}, "option per_layer=maybe: expected true or false"),
        ({"mode": "kl"}, "option mode=kl: expected one of min-max, entropy"),
    ],
)
def test_bad_options_name_the_pass(options, message):
    with pytest.raises(PipelineError) as caught:
        make_config(_Configurable, options)
    assert str(caught.value).startswith(message) or message in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "no-such-pass",
            "unknown pass or pipeline 'no-such-pass' (known: O1, bf16, cleanup, fp16, fuse, int8",
        ),
        ("cleanup{x=1}", "pipeline 'cleanup' takes no options"),
        ("dce,,cse", "empty item in pipeline 'dce,,cse'"),
        ("dce{a=1", "unbalanced '{' in pipeline 'dce{a=1'"),
        ("dce}", "unbalanced '}' in pipeline 'dce}'"),
        ("", "empty item in pipeline ''"),
    ],
)
def test_bad_pipeline_specs(spec, message):
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(spec)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "sparsify{pattern=unstructured,ratio=0.5}",
            "pass 'sparsify{pattern=unstructured,ratio=0.5}': options are separated by spaces, "
            "not commas: sparsify{pattern=unstructured ratio=0.5}",
        ),
        (
            "cleanup,sparsify{pattern=4x4 exclude=Conv,n7, ratio=0.5}",
            "pass 'sparsify{pattern=4x4 exclude=Conv,n7, ratio=0.5}': options are separated by "
            "spaces, not commas: sparsify{pattern=4x4 exclude=Conv,n7 ratio=0.5} "
            "(in 'cleanup,sparsify{pattern=4x4 exclude=Conv,n7, ratio=0.5}')",
        ),
    ],
)
def test_sparsify_options_separated_by_commas_hint_spaces(spec, message):
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(spec)
    assert str(caught.value) == message


def test_a_list_value_keeps_its_commas():
    (sparsify,) = parse_pipeline("sparsify{pattern=4x4 ratio=0.5 exclude=Conv,n7}")
    assert sparsify.config.exclude == ("Conv", "n7")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("onnxruntime{threads=2", "missing '}' after the options"),
        ("onnxruntime{threads=2}x", "text 'x' after the options' closing '}'"),
        ("onnxruntime{threads=2}{a=1}", "text '{a=1}' after the options' closing '}'"),
        ("onnxruntime{threads}", "option 'threads' is not key=value"),
    ],
)
def test_split_options_leaves_naming_the_pass_or_target_to_the_caller(text, message):
    """`--target` and a pipeline share the syntax: the message is the same for both, and
    `target '...'` or `pass '...'` is put in front by whoever knows which it is."""
    with pytest.raises(PipelineError) as caught:
        split_options(text, text)
    assert str(caught.value) == message


def test_records_survive_json(tmp_path):
    model = _neg_neg_relu(tmp_path)
    (record,) = run_pipeline(model, [CancelDoubleNeg()]).records
    again = PassRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again.to_json() == record.to_json()
    assert np.isfinite(again.wall_ms)
