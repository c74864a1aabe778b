"""`runner ir show | convert | verify` end to end, including bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from runner.cli import main


def _conv_relu_model() -> onnx.ModelProto:
    """x[1,3,8,8] -> Conv(4 filters 3x3, pad 1, bias) -> Relu -> y[1,4,8,8]."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node(
                "Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4
            ),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        "conv_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def conv_relu_path(tmp_path: Path) -> Path:
    path = tmp_path / "conv_relu.onnx"
    onnx.save(_conv_relu_model(), path)
    return path


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console entry point, in a fresh process, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args], capture_output=True, text=True, check=False
    )


# Conv: 2 * N*Cout*H*W * Cin*kh*kw + N*Cout*H*W (bias) = 2*1*4*8*8*3*3*3 + 256 = 14080
CONV_FLOPS = 2 * 1 * 4 * 8 * 8 * 3 * 3 * 3 + 1 * 4 * 8 * 8


def test_show_lists_each_node_with_id_shapes_attributes_and_flops(conv_relu_path, capsys):
    assert main(["ir", "show", str(conv_relu_path)]) == 0
    text = capsys.readouterr().out
    conv_line = next(line for line in text.splitlines() if " Conv " in line)
    assert conv_line.split()[0] == "n0"
    assert "f32[1,3,8,8], f32[4,3,3,3], f32[4] -> f32[1,4,8,8]" in conv_line
    assert "kernel_shape=[3,3]" in conv_line
    assert "pads=[1,1,1,1]" in conv_line
    assert "flops 14.1 K" in conv_line
    assert "nodes   2  (Conv 1, Relu 1)" in text
    assert "params  112 (448 B)" in text  # 4*3*3*3 + 4 float32 weights


def test_show_json_has_documented_keys_and_exact_totals(conv_relu_path, capsys):
    assert main(["ir", "show", str(conv_relu_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("fingerprint", "inputs", "outputs", "nodes", "op_counts", "params", "flops"):
        assert key in doc
    assert doc["fingerprint"].startswith("sha256:")
    assert [node["id"] for node in doc["nodes"]] == ["n0", "n1"]
    conv, relu = doc["nodes"]
    assert conv["op"] == "Conv" and conv["flops"] == CONV_FLOPS
    assert [v["name"] for v in conv["inputs"]] == ["x", "w", "b"]
    assert conv["outputs"] == [
        {"name": "c", "dtype": "f32", "shape": [1, 4, 8, 8], "initializer": False}
    ]
    assert relu["flops"] == 4 * 8 * 8
    assert doc["flops"] == CONV_FLOPS + 4 * 8 * 8
    assert doc["op_counts"] == {"Conv": 1, "Relu": 1}
    assert doc["params"] == 112
    assert doc["inputs"] == [
        {"name": "x", "dtype": "f32", "shape": [1, 3, 8, 8], "initializer": False}
    ]
    assert [v["initializer"] for v in conv["inputs"]] == [False, True, True]


def test_show_binds_symbolic_dims_for_flops(tmp_path, capsys):
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(np.ones((16, 8), np.float32), "w")],
    )
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["ir", "show", str(path), "--json"]) == 0
    unbound = json.loads(capsys.readouterr().out)
    assert unbound["nodes"][0]["flops"] is None
    assert unbound["inputs"][0]["shape"] == ["batch", 16]
    assert main(["ir", "show", str(path), "--json", "--dim", "batch=4"]) == 0
    assert json.loads(capsys.readouterr().out)["flops"] == 2 * 4 * 16 * 8


def test_show_accepts_a_zoo_name(capsys):
    assert main(["ir", "show", "onnx-light-squeezenet"]) == 0
    assert "Conv" in capsys.readouterr().out


def test_convert_writes_a_model_with_identical_outputs(conv_relu_path, tmp_path, capsys):
    out = tmp_path / "out" / "converted.onnx"
    assert main(["ir", "convert", str(conv_relu_path), str(out)]) == 0
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    before = ort.InferenceSession(str(conv_relu_path)).run(None, feeds)
    after = ort.InferenceSession(str(out)).run(None, feeds)
    np.testing.assert_array_equal(before[0], after[0])
    assert sorted(p.name for p in out.parent.iterdir()) == ["converted.onnx"]


def test_verify_reports_a_clean_model(conv_relu_path, capsys):
    assert main(["ir", "verify", str(conv_relu_path)]) == 0
    assert "2 nodes, 0 violations" in capsys.readouterr().out


def _unknown_domain_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.acme")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)]
    )
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("make_input", "expected"),
    [
        (lambda d: d / "missing.onnx", "missing.onnx: no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "notes.onnx", b"these are my notes, not a model\n"), "not an ONNX"),
        (
            lambda d: _write(d / "cut.onnx", _conv_relu_model().SerializeToString()[:150]),
            "cut.onnx: not an ONNX model",
        ),
        (lambda d: _unknown_domain_model(d / "acme.onnx"), "unknown operator domain 'com.acme'"),
        (lambda d: "no-such-zoo-model", "no zoo model of that name"),
    ],
    ids=["missing", "directory", "text-file", "truncated", "unknown-domain", "unknown-name"],
)
@pytest.mark.parametrize("command", ["show", "verify"])
def test_bad_input_is_one_line_exit_2_no_traceback(tmp_path, make_input, expected, command):
    result = _run_cli("ir", command, str(make_input(tmp_path)))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("runner: error: ")
    assert expected in result.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_convert_of_bad_input_leaves_no_output_file(tmp_path):
    bad = _write(tmp_path / "bad.onnx", b"\x00\x01garbage")
    out = tmp_path / "out.onnx"
    result = _run_cli("ir", "convert", str(bad), str(out))
    assert result.returncode == 2
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_bad_dim_binding_is_a_clean_error(conv_relu_path):
    result = _run_cli("ir", "show", str(conv_relu_path), "--dim", "batch")
    assert result.returncode == 2
    assert "--dim 'batch': expected NAME=SIZE (0 or more)" in result.stderr


def _position_slice_model(path: Path) -> Path:
    """BERT's embedding head in small: ids[batch,4] -> word Gather + position Gather, where the
    positions are `Slice(table, 0, Shape(ids)[1])` (ONNX's inference leaves their shape
    unknown), then Shape -> Concat -> Reshape to [batch, 24] and a MatMul by w[24,5]."""
    rng = np.random.default_rng(0)
    weights = {
        "words": rng.standard_normal((10, 6)).astype(np.float32),
        "positions": rng.standard_normal((8, 6)).astype(np.float32),
        "position_ids": np.arange(8, dtype=np.int64)[None, :],
        "zero": np.array([0], np.int64),
        "one": np.array([1], np.int64),
        "width": np.array([24], np.int64),
        "w": rng.standard_normal((24, 5)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["words", "ids"], ["embedded"]),
        helper.make_node("Shape", ["ids"], ["ids_shape"]),
        helper.make_node("Gather", ["ids_shape", "one"], ["seq"]),
        helper.make_node("Slice", ["position_ids", "zero", "seq", "one"], ["pos"]),
        helper.make_node("Gather", ["positions", "pos"], ["placed"]),
        helper.make_node("Add", ["embedded", "placed"], ["sum"]),
        helper.make_node("Shape", ["sum"], ["sum_shape"]),
        helper.make_node("Gather", ["sum_shape", "zero"], ["batch"]),
        helper.make_node("Concat", ["batch", "width"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["sum", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "position_slice",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_show_with_bound_dim_infers_shapes_again_for_flops(tmp_path, capsys):
    """docs/zoo.md's `ir show bert-base --dim batch=1` counted only the mask's FLOPs: shapes
    after the position Slice stayed unknown although every input dim was bound."""
    path = _position_slice_model(tmp_path / "m.onnx")
    assert main(["ir", "show", str(path), "--json", "--dim", "batch=3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_op = {node["op"]: node for node in doc["nodes"]}
    assert by_op["Reshape"]["outputs"][0]["shape"] == [3, 24]
    assert by_op["Add"]["flops"] == 3 * 4 * 6
    assert by_op["MatMul"]["flops"] == 2 * 3 * 24 * 5
    assert doc["flops"] == 3 * 4 * 6 + 2 * 3 * 24 * 5
    assert doc["uncosted_nodes"] == []


def test_show_at_the_largest_dim_counts_flops_without_allocating(tmp_path, capsys):
    path = _position_slice_model(tmp_path / "m.onnx")
    batch = 2**40  # MAX_DIM: settling the shape chains must not allocate by it
    assert main(["ir", "show", str(path), "--json", "--dim", f"batch={batch}"]) == 0
    assert json.loads(capsys.readouterr().out)["flops"] == batch * 4 * 6 + 2 * batch * 24 * 5


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        ("foo=4", "--dim foo=4: the model has no dim 'foo' (batch)"),
        (
            "batch=99999999999999999999",
            "--dim batch: 99999999999999999999 is out of range (expected 0 to 1099511627776)",
        ),
        (
            "batch=1099511627777",
            "--dim batch: 1099511627777 is out of range (expected 0 to 1099511627776)",
        ),
    ],
    ids=["unknown-name", "beyond-int64", "beyond-max-dim"],
)
def test_dim_binding_unknown_or_out_of_range_is_refused(tmp_path, capsys, binding, message):
    path = _position_slice_model(tmp_path / "m.onnx")
    assert main(["ir", "show", str(path), "--dim", binding]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"runner: error: {message}\n"


def test_dim_of_size_zero_is_an_empty_dim(tmp_path, capsys):
    """A dim may be empty (a KV cache's past length at prefill): shapes carry the 0 through
    and every node on it costs nothing, rather than the binding being refused."""
    path = _position_slice_model(tmp_path / "m.onnx")
    assert main(["ir", "show", str(path), "--json", "--dim", "batch=0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_op = {node["op"]: node for node in doc["nodes"]}
    assert by_op["Reshape"]["outputs"][0]["shape"] == [0, 24]
    assert doc["flops"] == 0


def test_verify_says_1_violation_not_1_violations(tmp_path, capsys):
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["a"], ["y"], name="second"),
            helper.make_node("Relu", ["x"], ["a"], name="first"),
        ],
        "unsorted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "unsorted.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["ir", "verify", str(path)]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == f"{path}: 2 nodes, 1 violation"
