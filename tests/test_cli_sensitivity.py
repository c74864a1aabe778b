"""`runner passes sensitivity` and `runner passes run --max-drift` with a real lossy pass
(sparsify keeps 1 weight in 4) on an MLP whose layers matter unequally."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.model_io import load_model
from passes.audit import read_audit
from runner.cli import main

PIPELINE = "sparsify{pattern=1:4}"


def _mlp(folder: Path) -> Path:
    """x -> MatMul w1 -> Relu -> MatMul w2 -> Relu -> MatMul w3 -> y; w2 is nearly diagonal, so
    pruning it to 1:4 barely matters, while w1 and w3 are dense random matrices."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 32)).astype(np.float32) / 4
    w2 = (np.eye(32) + rng.standard_normal((32, 32)) * 0.01).astype(np.float32)
    w3 = rng.standard_normal((32, 8)).astype(np.float32) / 6
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"]),
        helper.make_node("Relu", ["a"], ["ra"]),
        helper.make_node("MatMul", ["ra", "w2"], ["b"]),
        helper.make_node("Relu", ["b"], ["rb"]),
        helper.make_node("MatMul", ["rb", "w3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 8])],
        [numpy_helper.from_array(w, n) for n, w in (("w1", w1), ("w2", w2), ("w3", w3))],
    )
    path = folder / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _matmul_ids(path: Path) -> dict[str, str]:
    model = load_model(path)
    return {
        n.inputs[1].name: n.metadata_props["asicperf.id"]
        for n in model.graph
        if n.op_type == "MatMul"
    }


def test_sensitivity_ranks_layers_worst_first(tmp_path: Path, capsys) -> None:
    path = _mlp(tmp_path)
    ids = _matmul_ids(path)
    assert main(["passes", "sensitivity", str(path), "--pipeline", PIPELINE, "--json"]) == 0
    ranking = json.loads(capsys.readouterr().out)
    assert {r["node"] for r in ranking} == set(ids.values())
    assert ranking[-1]["node"] == ids["w2"]  # the near-identity layer hurts least
    cosines = [min(d["cosine"] for d in r["drifts"]) for r in ranking]
    assert cosines == sorted(cosines) and cosines[-1] > 0.999


def test_max_drift_keeps_the_worst_layers_dense(tmp_path: Path, capsys) -> None:
    path = _mlp(tmp_path)
    ids = _matmul_ids(path)
    output, audit = tmp_path / "out.onnx", tmp_path / "audit.jsonl"
    args = ["passes", "run", str(path), "--pipeline", PIPELINE, "-o", str(output)]
    assert main([*args, "--audit", str(audit), "--max-drift", "cosine=0.999"]) == 0
    assert "kept in FP32" in capsys.readouterr().out
    (record,) = read_audit(audit)
    budget = record.extra["drift_budget"]
    assert budget["holds"] and budget["measured"] >= 0.999
    kept = [layer["node"] for layer in budget["kept_fp32"]]
    assert kept and ids["w2"] not in kept
    weights = {
        init.name: init.const_value.numpy()
        for init in load_model(output).graph.initializers.values()
    }
    for name, node in ids.items():
        zeros = float((weights[name] == 0).mean())
        assert zeros == (0.0 if node in kept else 0.75)
    assert record.numeric is not None
    assert min(d["cosine"] for d in record.numeric["vs_input"]) >= 0.999


def test_a_budget_that_cannot_hold_writes_nothing(tmp_path: Path, capsys) -> None:
    path = _mlp(tmp_path)
    output, audit = tmp_path / "out.onnx", tmp_path / "audit.jsonl"
    args = ["passes", "run", str(path), "--pipeline", "fold-constants", "-o", str(output)]
    assert main([*args, "--audit", str(audit), "--max-drift", "cosine=0.9"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("runner: error:") and "no pass that works layer by layer" in error
    assert not output.exists() and not audit.exists()


@pytest.mark.parametrize("budget", ["cosine", "psnr=3"])
def test_bad_budget_is_a_one_line_error(tmp_path: Path, capsys, budget: str) -> None:
    path = _mlp(tmp_path)
    args = ["passes", "run", str(path), "--pipeline", PIPELINE, "-o", str(tmp_path / "o.onnx")]
    assert main([*args, "--audit", str(tmp_path / "a.jsonl"), "--max-drift", budget]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--max-drift" in error[0]
