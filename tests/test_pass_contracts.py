"""Pass contracts (requirements checked before anything runs), fixed-point `repeat(...)`
groups, and instruments that fill the audit or keep a pass from running (`--disable-pass`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.model_io import load_model
from passes.audit import PassRecord, SkippedBy, read_audit, write_audit
from passes.base import Pass, PassLog
from passes.catalog import PASSES
from passes.contract_check import check_contracts
from passes.contracts import CONSTANT_WEIGHTS, weights_are_constants
from passes.instruments import DebugPrint, DisablePasses, Instrument, NumericCheck
from passes.manager import run_pipeline
from passes.pipeline import PIPELINES, PipelineError, parse_pipeline, parse_straight_pipeline
from passes.steps import Repeat, most_pass_runs, steps_text
from passes.target_binding import bind_pipeline
from runner.cli import main
from targets.tvm_target import LOWERING
from zoo.workload import shipped_workloads

# W is [2, 4]; MatMul reads its transpose, [4, 2]: 2:4 pruning along the 4 keeps the two
# largest magnitudes of each column.
_W = np.array([[1.0, -2.0, 3.0, -4.0], [0.5, 6.0, -7.0, 8.0]], dtype=np.float32)
_W_T_PRUNED = np.array([[0, 0], [0, 0], [3, -7], [-4, 8]], dtype=np.float32)


def _matmul_model(tmp_path: Path, *, transposed_weight: bool) -> oir.Model:
    """x[2,4] @ W^T -> y[2,2]; the weight is Transpose(W) (a constant subgraph fold-constants
    folds) or the initializer W^T itself."""
    if transposed_weight:
        nodes = [
            helper.make_node("Transpose", ["W"], ["Wt"]),
            helper.make_node("MatMul", ["x", "Wt"], ["y"]),
        ]
        weight = numpy_helper.from_array(_W, "W")
    else:
        nodes = [helper.make_node("MatMul", ["x", "Wt"], ["y"])]
        weight = numpy_helper.from_array(_W.T.copy(), "Wt")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [weight],
    )
    path = tmp_path / ("folded.onnx" if not transposed_weight else "transposed.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return load_model(path)


def _neg_twice(tmp_path: Path) -> Path:
    """y = Neg(x) + Neg(Identity(x)): the two Negs are one value only once the Identity is gone,
    so cse finds them in the round after remove-identity."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["i"]),
            helper.make_node("Neg", ["x"], ["a1"]),
            helper.make_node("Neg", ["i"], ["a2"]),
            helper.make_node("Add", ["a1", "a2"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    path = tmp_path / "neg_twice.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _weight(model: oir.Model) -> np.ndarray:
    (matmul,) = [node for node in model.graph if node.op_type == "MatMul"]
    return matmul.inputs[1].const_value.numpy()


# --- contracts -----------------------------------------------------------------------------


def test_wrong_order_is_one_line_naming_pass_need_and_provider(tmp_path):
    model = _matmul_model(tmp_path, transposed_weight=True)
    with pytest.raises(PipelineError) as error:
        run_pipeline(model, parse_pipeline("sparsify{pattern=2:4},fold-constants"))
    assert str(error.value) == (
        "pipeline 'sparsify,fold-constants': pass 'sparsify' needs constant weights: "
        "run 'fold-constants' before it"
    )
    assert [node.op_type for node in model.graph] == ["Transpose", "MatMul"]  # nothing ran


@pytest.mark.parametrize(
    "fusion", ["fuse-conv-bn", "fuse-matmul-add", "fuse-attention", "fuse-activation"]
)
def test_a_fusion_pass_alone_on_weights_to_fold_is_refused(tmp_path, fusion):
    """A fusion reads weights as constants: a Transpose(W) it cannot see through would be
    skipped, so the pipeline is refused with the fix instead."""
    model = _matmul_model(tmp_path, transposed_weight=True)
    with pytest.raises(PipelineError) as error:
        check_contracts(parse_pipeline(fusion), model)
    assert str(error.value) == (
        f"pipeline '{fusion}': pass '{fusion}' needs constant weights: "
        "run 'fold-constants' before it"
    )
    check_contracts(parse_pipeline(f"fold-constants,{fusion}"), model)


def test_right_order_runs_and_prunes_the_folded_weight(tmp_path):
    model = _matmul_model(tmp_path, transposed_weight=True)
    result = run_pipeline(model, parse_pipeline("fold-constants,sparsify{pattern=2:4}"))
    assert [(r.pass_name, r.modified) for r in result.records] == [
        ("fold-constants", True),
        ("sparsify", True),
    ]
    assert [node.op_type for node in model.graph] == ["MatMul"]
    np.testing.assert_array_equal(_weight(model), _W_T_PRUNED)


def test_a_property_the_input_model_has_needs_no_prerequisite(tmp_path):
    model = _matmul_model(tmp_path, transposed_weight=False)
    assert weights_are_constants(model)
    (record,) = run_pipeline(model, parse_pipeline("sparsify{pattern=2:4}")).records
    assert record.modified
    np.testing.assert_array_equal(_weight(model), _W_T_PRUNED)


def test_a_pass_that_invalidates_a_property_is_named(tmp_path):
    model = _matmul_model(tmp_path, transposed_weight=False)
    with pytest.raises(PipelineError) as error:
        run_pipeline(model, parse_pipeline("quantize-int8,sparsify"))
    assert str(error.value) == (
        "pipeline 'quantize-int8,sparsify': pass 'sparsify' needs constant weights, which "
        "'quantize-int8' before it invalidates: run 'fold-constants' between them"
    )


def test_the_check_comes_before_every_instrument(tmp_path):
    calls: list[str] = []

    class Record(Instrument):
        def before_pipeline(self, model):
            calls.append("before_pipeline")

    with pytest.raises(PipelineError):
        run_pipeline(
            _matmul_model(tmp_path, transposed_weight=True), parse_pipeline("sparsify"), [Record()]
        )
    assert calls == []


def test_a_repeat_group_is_checked_for_its_second_round_too(tmp_path):
    """Round 1 finds constant weights on the input; round 2 finds them undone by quantize-int8."""
    model = _matmul_model(tmp_path, transposed_weight=False)
    with pytest.raises(PipelineError, match="'quantize-int8' before it invalidates"):
        check_contracts(parse_pipeline("repeat(sparsify,quantize-int8){max=2}"), model)
    check_contracts(parse_pipeline("repeat(sparsify,quantize-int8){max=1}"), model)


def test_constant_weights_holds_without_constant_subgraphs(tmp_path):
    assert not weights_are_constants(_matmul_model(tmp_path, transposed_weight=True))
    assert weights_are_constants(load_model(_neg_twice(tmp_path)))


def test_every_declared_property_is_provided_by_the_pass_it_names():
    declared = {
        prop
        for pass_type in PASSES.values()
        for prop in (*pass_type.requires, *pass_type.provides, *pass_type.invalidates)
    }
    assert CONSTANT_WEIGHTS in declared
    for prop in declared:
        assert prop in PASSES[prop.provided_by].provides, prop.name


def _shipped_pipelines() -> set[str]:
    docs = {
        "fold-constants{max_elements=1048576},fuse-conv-bn,dce",
        "O1,fuse-activation{target=onnxruntime}",
        "sparsify{pattern=2:4}",
    }
    workloads = {w.pipeline for w in shipped_workloads().values() if w.pipeline}
    return {*PIPELINES, LOWERING, *workloads, *docs}


def test_shipped_pipelines_pass_the_check(tmp_path):
    """Every named pipeline, the tvm lowering, the workloads' and the docs' pipelines. Those that
    prepare the weights themselves pass on a model with a constant subgraph; `fuse` (which O1
    runs after `cleanup`) and the docs' `sparsify` (on zoo models whose weights are
    initializers) on a model without one."""
    unprepared = _matmul_model(tmp_path, transposed_weight=True)
    prepared = _matmul_model(tmp_path, transposed_weight=False)
    for spec in sorted(_shipped_pipelines()):
        model = prepared if spec in ("fuse", "sparsify{pattern=2:4}") else unprepared
        check_contracts(parse_pipeline(spec), model)


# --- repeat groups -------------------------------------------------------------------------


def test_repeat_runs_to_the_fixed_point_and_audits_every_round(tmp_path):
    model = load_model(_neg_twice(tmp_path))
    stream = io.StringIO()
    steps = parse_pipeline("repeat(cse,remove-identity)")
    result = run_pipeline(model, steps, [DebugPrint(1, stream)])
    assert [node.op_type for node in model.graph] == ["Neg", "Add"]
    rows = [(r.seq, r.pass_name, r.modified, r.repeat.round) for r in result.records]
    assert rows == [
        (1, "cse", False, 1),
        (2, "remove-identity", True, 1),
        (3, "cse", True, 2),  # the Identity gone, both Negs read x
        (4, "remove-identity", False, 2),
        (5, "cse", False, 3),
        (6, "remove-identity", False, 3),
    ]
    for record in result.records:
        assert record.repeat.to_json() == {
            "group": "repeat(cse,remove-identity){max=8}",
            "first_seq": 1,
            "round": record.repeat.round,
            "rounds": 3,
            "max_rounds": 8,
            "fixed_point": True,
        }
    assert stream.getvalue().splitlines()[-2:] == [
        "[end] 6 pass runs, 2 changed the model; 0 skipped by instruments",
        "[end] repeat(cse,remove-identity){max=8}: fixed point after 3 rounds",
    ]
    path = write_audit(tmp_path / "audit.jsonl", result.records)
    assert [r.to_json() for r in read_audit(path)] == [r.to_json() for r in result.records]


def test_repeat_stops_at_its_cap(tmp_path):
    model = load_model(_neg_twice(tmp_path))
    result = run_pipeline(model, parse_pipeline("repeat(cse,remove-identity){max=1},dce"))
    assert [node.op_type for node in model.graph] == ["Neg", "Neg", "Add"]  # cse's turn not come
    group, dce = result.records[:2], result.records[2]
    assert [(r.pass_name, r.repeat.rounds, r.repeat.fixed_point) for r in group] == [
        ("cse", 1, False),
        ("remove-identity", 1, False),
    ]
    assert group[0].repeat.outcome() == (
        "stopped at the cap of 1 rounds, the last still changing the model"
    )
    assert dce.pass_name == "dce" and dce.repeat is None and "repeat" not in dce.to_json()


def test_repeat_syntax():
    (group, dce) = parse_pipeline("repeat(cleanup,sparsify{pattern=4x4 ratio=0.5}){max=3},dce")
    assert isinstance(group, Repeat) and group.max_rounds == 3 and dce.name == "dce"
    assert [p.name for p in group.passes] == [
        *["fold-constants", "remove-identity", "cse", "dce", "sparsify"]
    ]
    assert group.passes[-1].config.ratio == 0.5
    assert steps_text([group, dce]) == (
        "repeat(fold-constants,remove-identity,cse,dce,sparsify){max=3},dce"
    )
    assert most_pass_runs([group, dce]) == 16


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("repeat()", "empty repeat() in pipeline 'repeat()'"),
        ("repeat(cse){max=0}", "group 'repeat': max=0 is outside max >= 1"),
        ("repeat(cse){rounds=2}", "group 'repeat': unknown option 'rounds' (options: max)"),
        ("repeat(cse)dce", "text 'dce' after repeat(...) in pipeline 'repeat(cse)dce'"),
        ("repeat(cse,dce", "unbalanced '(' in pipeline 'repeat(cse,dce'"),
        ("repeat(repeat(cse))", "repeat() inside repeat(repeat(cse)): groups do not nest"),
    ],
)
def test_bad_repeat_groups_are_one_line(spec, message):
    with pytest.raises(PipelineError) as error:
        parse_pipeline(spec)
    assert str(error.value) == message


def test_binding_a_target_keeps_the_group_and_reaches_its_passes():
    bound = bind_pipeline("repeat(cse,fuse-activation){max=3},dce", "onnxruntime")
    assert bound == "repeat(cse,fuse-activation{target=onnxruntime}){max=3},dce"


def test_layer_by_layer_uses_refuse_a_repeat_group():
    with pytest.raises(PipelineError) as error:
        parse_straight_pipeline("repeat(sparsify,dce){max=2}", "passes sensitivity")
    assert str(error.value) == (
        "passes sensitivity: pipeline 'repeat(sparsify,dce){max=2}' repeats "
        "repeat(sparsify,dce){max=2}; it needs passes that run once each, in order"
    )


# --- instruments -----------------------------------------------------------------------------


class _MustNotRun(Pass):
    name = "remove-identity"  # the name DisablePasses matches
    summary = "fails if run"

    def run(self, model: oir.Model, log: PassLog) -> None:
        raise AssertionError("a disabled pass ran")


def test_hooks_run_in_order_and_a_skipped_pass_gets_none(tmp_path):
    calls: list[str] = []

    class Record(Instrument):
        def before_pipeline(self, model):
            calls.append("before_pipeline")

        def skip_reason(self, seq, pass_):
            calls.append(f"skip_reason {seq}")
            return None

        def before_pass(self, seq, pass_, model):
            calls.append(f"before_pass {seq}")

        def after_pass(self, seq, pass_, model, result):
            calls.append(f"after_pass {seq}")
            return {"checked_by_record": seq}

        def after_pipeline(self, model, records):
            calls.append(f"after_pipeline {len(records)}")

    model = load_model(_neg_twice(tmp_path))
    steps = [*parse_pipeline("cse"), _MustNotRun()]
    disable = DisablePasses(["remove-identity"], steps)
    result = run_pipeline(model, steps, [disable, Record()])
    assert calls == [
        "before_pipeline",
        "skip_reason 1",
        "before_pass 1",
        "after_pass 1",
        "after_pipeline 2",  # Record is after DisablePasses: not asked about pass 2
    ]
    cse, skipped = result.records
    assert cse.extra == {"checked_by_record": 1} and cse.to_json()["checked_by_record"] == 1
    assert skipped.skipped_by == SkippedBy("DisablePasses", "disabled by --disable-pass")
    assert skipped.in_fingerprint == skipped.out_fingerprint and not skipped.modified
    assert skipped.to_json()["skipped_by"] == {
        "instrument": "DisablePasses",
        "reason": "disabled by --disable-pass",
    }


def test_numeric_check_fills_the_record_as_an_instrument(tmp_path):
    model = load_model(_neg_twice(tmp_path))
    plain = run_pipeline(model, parse_pipeline("remove-identity")).records[0]
    assert plain.numeric is None and plain.to_json()["numeric"] is None
    model = load_model(_neg_twice(tmp_path))
    checked = run_pipeline(model, parse_pipeline("remove-identity"), [NumericCheck(seed=1)])
    (record,) = checked.records
    assert record.numeric["seed"] == 1
    assert record.numeric["vs_input"][0]["max_abs"] == 0.0
    read_back = PassRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert read_back.numeric == record.numeric and read_back.to_json() == record.to_json()


def _run_cli(tmp_path: Path, *extra: str) -> list[str]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    args = ["passes", "run", str(_neg_twice(tmp_path)), "--pipeline", "repeat(cse,remove-identity)"]
    return [*args, "-o", str(out / "m.onnx"), "--audit", str(out / "a.jsonl"), *extra]


def test_cli_disable_pass_skips_it_in_every_round(tmp_path, capsys):
    assert main(_run_cli(tmp_path, "--disable-pass", "cse")) == 0
    records = read_audit(tmp_path / "out" / "a.jsonl")
    assert [(r.pass_name, r.modified, r.skipped_by is not None) for r in records] == [
        ("cse", False, True),
        ("remove-identity", True, False),
        ("cse", False, True),
        ("remove-identity", False, False),
    ]
    assert {r.skipped_by for r in records[::2]} == {
        SkippedBy("DisablePasses", "disabled by --disable-pass")
    }
    assert records[0].repeat.outcome() == "fixed point after 2 rounds"
    assert records[1].numeric["vs_input"][0]["max_abs"] == 0.0  # the numeric check ran
    model = load_model(tmp_path / "out" / "m.onnx")
    assert [node.op_type for node in model.graph] == ["Neg", "Neg", "Add"]  # never merged
    text = " ".join(capsys.readouterr().out.split())
    assert "cse (round 2; not run: disabled by --disable-pass)" in text
    assert "repeat(cse,remove-identity){max=8}: fixed point after 2 rounds" in text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuch", "--disable-pass nosuch: no such pass (passes: "),
        (
            "sparsify",
            "--disable-pass sparsify: pipeline 'repeat(cse,remove-identity){max=8}' has no "
            "pass 'sparsify'",
        ),
    ],
)
def test_cli_disable_pass_refuses_a_name_before_work(tmp_path, capsys, name, message):
    assert main(_run_cli(tmp_path, "--disable-pass", name)) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"runner: error: {message}") and error.count("\n") == 1
    assert not (tmp_path / "out" / "m.onnx").exists()
