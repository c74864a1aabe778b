"""`runner passes` end to end: O1 on a ResNet-50 and a BERT-style graph, audit, explain, errors."""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from pathlib import Path

import onnx
import pytest
from bert_like import build_bert_like
from onnx import TensorProto, helper
from rich.console import Console
from test_pass_manager import BreakGraph

from ir.model_io import load_model
from ir.node_ids import origin_ids
from ir.verifier import verify
from passes.audit import PassRecord, read_audit
from passes.catalog import PASSES
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline
from passes.precision.mixed_precision import MixedPrecisionConfig
from runner import passes_commands
from runner.cli import main
from runner.console import terminal_stderr
from runner.pass_progress import PassProgress
from zoo.catalog import ZOO

ALL_PASSES = [
    "cse",
    "dce",
    "fold-constants",
    "fuse-activation",
    "fuse-attention",
    "fuse-conv-bn",
    "fuse-gqa",
    "fuse-matmul-add",
    "fuse-rms-norm",
    "fuse-rotary",
    "mixed-precision",
    "quantize-int8",
    "quantize-weights",
    "recognize-gelu",
    "recognize-layernorm",
    "recognize-swiglu",
    "remove-identity",
    "sparsify",
]


def _run_o1(model: str, out: Path, *options: str) -> tuple[Path, Path]:
    output, audit = out / "model.onnx", out / "audit.jsonl"
    args = ["passes", "run", model, "--pipeline", "O1", "-o", str(output), "--audit", str(audit)]
    assert main([*args, *options]) == 0
    return output, audit


def test_list_shows_every_pass_and_pipeline(capsys):
    assert main(["passes", "list"]) == 0
    text = capsys.readouterr().out
    assert sorted(PASSES) == ALL_PASSES
    pipelines = ["cleanup", "fuse", "O1", "llm", "llm-int8", "llm-int4", "int8", "bf16", "fp16"]
    for name in [*ALL_PASSES, *pipelines, "max_elements=16777216"]:
        assert name in text


@pytest.fixture(scope="module")
def resnet_o1(tmp_path_factory) -> tuple[Path, Path]:
    return _run_o1("onnx-light-resnet50", tmp_path_factory.mktemp("r50"))


def test_o1_on_resnet50_folds_every_batchnorm_and_keeps_the_numbers(resnet_o1):
    output, audit = resnet_o1
    before = Counter(node.op_type for node in onnx.load(ZOO["onnx-light-resnet50"].file).graph.node)
    model = load_model(output)
    after = Counter(node.op_type for node in model.graph)
    assert before["BatchNormalization"] == 53 and after["BatchNormalization"] == 0
    assert after["ConstantOfShape"] == 0  # weights folded into initializers
    assert after["FusedConv"] == 33 and after["Conv"] == 20  # 16 residual Sums stay unfused
    assert sum(after.values()) == 90 and sum(before.values()) == 415
    assert verify(model) == []
    records = read_audit(audit)
    assert [r.pass_name for r in records] == [
        *["fold-constants", "remove-identity", "cse", "dce"],
        *["fuse-conv-bn", "fuse-matmul-add", "recognize-gelu", "recognize-layernorm"],
        *["fuse-attention", "fuse-activation", "dce"],
    ]
    assert records[4].rule_counts() == {"conv-bn": 53}
    # bound to the zoo workload's target, as each fusion pass's config records
    targets = {r.pass_name: r.config["target"] for r in records if "target" in r.config}
    assert targets == {
        "recognize-gelu": "onnxruntime",
        "recognize-layernorm": "onnxruntime",
        "fuse-attention": "onnxruntime",
        "fuse-activation": "onnxruntime",
    }
    assert records[0].node_count == (415, 176) and records[-1].node_count == (90, 90)
    assert (
        records[-1].out_fingerprint
        == json.loads(audit.read_text().splitlines()[-1])["out_fingerprint"]
    )
    for record in records:
        assert record.in_fingerprint.startswith("sha256:")
        if record.modified:
            assert all(d["cosine"] >= 0.99999 for d in record.numeric["vs_input"])
        else:
            assert record.numeric is None and record.in_fingerprint == record.out_fingerprint


def test_explain_traces_a_fused_node_to_its_original_ids(resnet_o1, capsys):
    output, audit = resnet_o1
    fused = next(node for node in load_model(output).graph if node.op_type == "FusedConv")
    original = set(origin_ids(fused))
    original_ops = {
        node.op_type
        for node in load_model(ZOO["onnx-light-resnet50"].file).graph
        if node.metadata_props["asicperf.id"] in original
    }
    assert original_ops == {"Conv", "BatchNormalization", "Relu"}
    fused_id = fused.metadata_props["asicperf.id"]
    assert main(["passes", "explain", str(audit), "--node", fused_id]) == 0
    text = capsys.readouterr().out
    assert "fuse-activation] rule conv-activation" in text
    assert "fuse-conv-bn] rule conv-bn" in text
    listed = text.split("original nodes: ")[1].split()
    assert {node.strip(",") for node in listed} == original


def test_explain_summarises_changes_and_skips_by_rule(resnet_o1, capsys):
    _, audit = resnet_o1
    assert main(["passes", "explain", str(audit)]) == 0
    text = capsys.readouterr().out
    assert "changed conv-bn: 53" in text
    assert "changed fold: 239" in text
    assert "47 more (--all lists them)" in text or "more (--all lists them)" in text


def test_o1_on_a_bert_style_graph_recognizes_every_pattern(tmp_path):
    source = tmp_path / "bert.onnx"
    onnx.save(build_bert_like(opset=14, layers=2), source)
    output, audit = _run_o1(str(source), tmp_path / "out", "--target", "onnxruntime")
    model = load_model(output)  # LayerNormalization at opset 14 reloads: onnxruntime runs it
    ops = Counter(
        f"{node.domain}:{node.op_type}" if node.domain else node.op_type for node in model.graph
    )
    assert ops["LayerNormalization"] == 5
    assert ops["com.microsoft:Gelu"] == 2
    assert ops["com.microsoft:MultiHeadAttention"] == 2
    for gone in ("Softmax", "Erf", "ReduceMean", "Sqrt", "Pow"):
        assert ops[gone] == 0
    assert verify(model) == []
    records = read_audit(audit)
    counts = {r.pass_name: r.rule_counts() for r in records if r.modified}
    assert counts["recognize-gelu"]["gelu-erf"] == 2
    assert counts["recognize-layernorm"] == {"layernorm": 5}
    assert counts["fuse-attention"] == {"attention": 2}
    drift = [d for r in records if r.modified for d in r.numeric["vs_input"]]
    assert min(d["cosine"] for d in drift) >= 0.99999
    assert max(d["max_rel"] for d in drift) < 1e-3


def test_a_model_file_gets_no_target_unless_given(tmp_path, capsys):
    """Without --target a model outside the zoo is rewritten into standard ONNX ops only: at
    opset 14 that is neither Gelu, LayerNormalization nor MultiHeadAttention."""
    source = tmp_path / "bert.onnx"
    onnx.save(build_bert_like(opset=14, layers=1, batch=1), source)
    output, audit = tmp_path / "m.onnx", tmp_path / "audit.jsonl"
    pipeline = "recognize-gelu,recognize-layernorm,fuse-attention"
    args = ["passes", "run", str(source), "--pipeline", pipeline, "--no-numeric"]
    assert main([*args, "-o", str(output), "--audit", str(audit)]) == 0
    assert "fused ops for no target (standard ONNX ops only)" in capsys.readouterr().out
    records = read_audit(audit)
    assert [(r.config["target"], r.modified) for r in records] == [("", False)] * 3
    assert records[0].skipped[0].reason == (
        "Div+Erf+Add+Mul+Mul not fused: ONNX defines no Gelu at opset 14 and no target is "
        "given (target=NAME); com.microsoft.Gelu is not a standard ONNX op and no target is "
        "given (target=NAME)"
    )


@pytest.mark.parametrize("command", ["run", "sensitivity"])
def test_unknown_target_fails_before_any_work(tmp_path, capsys, command):
    args = ["passes", command, "onnx-light-squeezenet", "--pipeline", "cleanup"]
    if command == "run":
        args += ["-o", str(tmp_path / "m.onnx"), "--audit", str(tmp_path / "a.jsonl")]
    assert main([*args, "--target", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runner: error: unknown target 'nosuch' (known: ")
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_same_pipeline_twice_gives_identical_audits_except_times(tmp_path):
    first = read_audit(_run_o1("onnx-light-squeezenet", tmp_path / "a")[1])
    second = read_audit(_run_o1("onnx-light-squeezenet", tmp_path / "b")[1])

    def timeless(records):
        return [{**r.to_json(), "wall_ms": None} for r in records]

    assert timeless(first) == timeless(second)
    assert (tmp_path / "a" / "model.onnx").read_bytes() == (
        tmp_path / "b" / "model.onnx"
    ).read_bytes()


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("fold-constants,frobnicate", "unknown pass or pipeline 'frobnicate'"),
        ("fold-constants{max_elements=many}", "pass 'fold-constants': option max_elements=many"),
        ("dce{colour=red}", "pass 'dce': unknown option 'colour'"),
        ("break-graph", "pass 'break-graph' (#1) broke the IR: dangling-use"),
    ],
)
def test_bad_pipelines_fail_cleanly_and_write_nothing(
    tmp_path, capsys, monkeypatch, pipeline, message
):
    monkeypatch.setitem(PASSES, "break-graph", BreakGraph)
    output, audit = tmp_path / "out.onnx", tmp_path / "audit.jsonl"
    args = ["passes", "run", "onnx-light-squeezenet", "--pipeline", pipeline]
    assert main([*args, "-o", str(output), "--audit", str(audit)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runner: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_dump_ir_and_debug_output(tmp_path, capsys):
    args = ["passes", "run", "onnx-light-squeezenet", "--pipeline", "fold-constants,dce"]
    out = ["-o", str(tmp_path / "m.onnx"), "--audit", str(tmp_path / "a.jsonl")]
    assert main([*args, *out, "--dump-ir", str(tmp_path / "ir"), "--debug", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == [
        "000_input.txt",
        "001_fold-constants.txt",
        "002_dce.txt",
    ]
    assert "[001] fold-constants: modified=True" in capsys.readouterr().err


def _bert_pipeline(tmp_path, pipeline: str) -> tuple[dict[str, PassRecord], Path]:
    """`runner passes run` of a named pipeline on a one-layer BERT: its records by pass name,
    and the model it wrote."""
    source = tmp_path / "bert.onnx"
    onnx.save(build_bert_like(opset=14, layers=1, batch=1), source)
    output, audit = tmp_path / f"{pipeline}.onnx", tmp_path / f"{pipeline}.jsonl"
    args = ["passes", "run", str(source), "--pipeline", pipeline, "-o", str(output)]
    assert main([*args, "--audit", str(audit)]) == 0
    return {r.pass_name: r for r in read_audit(audit)}, output


def test_bf16_pipeline_measures_its_drift_through_emulation(tmp_path):
    """onnxruntime has no CPU bfloat16 MatMul: the numeric check runs the emulated model."""
    records, _ = _bert_pipeline(tmp_path, "bf16")
    record = records["mixed-precision"]
    assert record.rule_counts()["low-precision"] == 8
    drift = record.numeric["vs_input"][0]
    assert 0 < drift["max_abs"] < 0.05 and drift["cosine"] > 0.9999


def test_int8_pipeline_quantizes_the_gemms_it_forms_first(tmp_path):
    records, output = _bert_pipeline(tmp_path, "int8")
    assert records["fuse-matmul-add"].rule_counts()["matmul-add-reshape-gemm"] > 0
    quantized = records["quantize-int8"]
    assert quantized.config["activations"] == "asymmetric"
    assert quantized.rule_counts()["weight"] > 0
    assert min(d["cosine"] for d in quantized.numeric["vs_input"]) > 0.99
    ops = Counter(node.op_type for node in load_model(output).graph)
    assert ops["DequantizeLinear"] > ops["QuantizeLinear"] > 0


@pytest.fixture
def cleanup_audit(small_model_path, tmp_path) -> Path:
    """The audit of `cleanup` on the small Conv/Gemm model (n0..n4), which changes nothing."""
    output, audit = tmp_path / "m.onnx", tmp_path / "audit.jsonl"
    args = ["passes", "run", str(small_model_path), "--pipeline", "cleanup", "--no-numeric"]
    assert main([*args, "-o", str(output), "--audit", str(audit)]) == 0
    return audit


def test_explain_of_a_node_the_audit_never_saw_is_an_error(cleanup_audit, capsys):
    capsys.readouterr()
    assert main(["passes", "explain", str(cleanup_audit), "--node", "n999"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"runner: error: {cleanup_audit}: no node n999 in this audit (not created by any pass, "
        "not among the input model's 5 nodes)\n"
    )


def test_explain_of_an_untouched_input_node_says_where_it_comes_from(cleanup_audit, capsys):
    capsys.readouterr()
    assert read_audit(cleanup_audit)[0].input_nodes == ("n0", "n1", "n2", "n3", "n4")
    assert main(["passes", "explain", str(cleanup_audit), "--node", "n4"]) == 0
    assert capsys.readouterr().out == (
        "n4 was not created by any pass: it comes from the pipeline's input model\n"
    )


def test_explain_of_an_empty_audit_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["passes", "explain", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"runner: error: {empty}: empty audit log (no pass records)\n"
    )


@pytest.mark.parametrize("width", [80, 120])
def test_list_shows_the_mixed_precision_deny_option_whole(width, monkeypatch, capsys):
    monkeypatch.setattr(passes_commands, "console", lambda: Console(file=sys.stdout, width=width))
    assert main(["passes", "list"]) == 0
    text = capsys.readouterr().out
    assert "…" not in text
    # The options column's pieces of the mixed-precision row, read top to bottom.
    rows = [line.split("│") for line in text.splitlines() if line.count("│") == 4]
    start = next(i for i, row in enumerate(rows) if row[1].strip() == "mixed-precision")
    end = next(i for i in range(start + 1, len(rows)) if rows[i][1].strip())
    options = "".join(row[3].strip() for row in rows[start:end])
    deny = MixedPrecisionConfig().deny
    assert f"deny={','.join(deny)}" in options


def test_passes_run_shows_one_line_per_pass_on_a_terminal(small_model_path):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=80)
    model = load_model(small_model_path)
    passes = parse_pipeline("fold-constants,dce")
    with PassProgress(terminal, len(passes)) as progress:
        run_pipeline(model, passes, [progress])
    lines = [line for line in screen.getvalue().splitlines() if "] " in line]
    assert any("[1/2] fold-constants: unchanged (" in line for line in lines)
    assert any("[2/2] dce: unchanged (" in line for line in lines)


def test_passes_run_shows_no_progress_when_stderr_is_not_a_terminal(
    small_model_path, tmp_path, capsys
):
    out = ["-o", str(tmp_path / "m.onnx"), "--audit", str(tmp_path / "a.jsonl")]
    args = ["passes", "run", str(small_model_path), "--pipeline", "cleanup", "--no-numeric"]
    assert main([*args, *out]) == 0
    assert capsys.readouterr().err == ""
    assert terminal_stderr() is None


def test_progress_goes_to_stderr_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown = terminal_stderr()
    assert shown is not None and shown.file is sys.stderr


def test_passes_run_numeric_check_of_a_huge_input_is_refused_before_allocating(tmp_path, capsys):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2**40, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2**40, 4])],
    )
    source = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), source)
    output, audit = tmp_path / "out.onnx", tmp_path / "audit.jsonl"
    args = ["passes", "run", str(source), "--pipeline", "dce", "-o", str(output)]
    assert main([*args, "--audit", str(audit)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"runner: error: numeric check of {source}: needs at least 49,152.0 GiB")
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.onnx"]
