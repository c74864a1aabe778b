"""Profiles read back: compared by original node id after a pipeline that renames nodes, shown,
drawn in the HTML report; a version 3 document upgraded; a quantized layer judged against the
int8 ceiling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from fake_profilers import UNMAPPED_MS
from onnx import TensorProto, helper
from report_documents import model_document
from small_models import onnx_model
from test_profile_command import PROFILED, known_host, tiny_model  # noqa: F401 (a fixture)

from ir.model_io import load_model
from runner.cli import main
from runner.report.profile_figures import PieceLayer, profile_layers
from runner.results.files import result_from_json
from runner.results.op import CeilingRecord, RooflineRecord
from runner.results.record import ResultError
from targets.profiling import LayerTiming


def _profiles(tmp_path: Path) -> tuple[str, str]:
    model = str(tiny_model(tmp_path))
    plain, fused = str(tmp_path / "plain"), str(tmp_path / "fused")
    base = ["profile", model, "--target", PROFILED, "--runs", "3", "--json"]
    assert main([*base, "--out", plain]) == 0
    assert main([*base, "--pipeline", "fuse-matmul-add", "--out", fused]) == 0
    return plain, fused


def test_compare_matches_a_fused_layer_to_the_layers_it_replaced(tmp_path, capsys) -> None:
    plain, fused = _profiles(tmp_path)
    capsys.readouterr()
    assert main(["report", "compare", plain, fused, "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    matched = [
        (g["original_nodes"], g["a_layers"], g["b_layers"], g["a_ms"], g["b_ms"], g["change"])
        for g in comparison["matched"]
    ]
    assert matched == [
        (["n0", "n1"], ["MatMul_n0", "Add_n1"], ["Gemm_n3"], 2.5, 2.0, "faster"),
        (["n2"], ["Relu_n2"], ["Relu_n2"], 0.25, 0.25, "same"),
    ]
    assert comparison["unmatched_a_ms"] == comparison["unmatched_b_ms"] == UNMAPPED_MS
    assert main(["report", "compare", plain, fused]) == 0
    assert "only in A: 0.250 ms in memcpy" in capsys.readouterr().out


def test_show_and_html_have_the_profile(tmp_path, capsys) -> None:
    plain, fused = _profiles(tmp_path)
    capsys.readouterr()
    assert main(["report", "show", plain]) == 0
    shown = capsys.readouterr().out
    assert "profile result" in shown and "profilers  fake profiler" in shown
    page = tmp_path / "report.html"
    assert main(["report", "html", plain, fused, "-o", str(page)]) == 0
    html = page.read_text()
    assert '<section id="profile"><h2>Profiles</h2>' in html
    assert html.count("<h3>Top 4 layers:") == 1 and html.count("<h3>Top 3 layers:") == 1
    assert html.count("<h3>Roofline: ") == 2
    assert "layers 3 ms of 3.5 ms end to end" in html


def test_a_version_3_document_upgrades_and_a_version_3_profile_is_refused() -> None:
    old = {**model_document(), "schema": "asicperf.result/3"}
    assert result_from_json(old, "old.json").migrated_from == "3"
    with pytest.raises(ResultError) as caught:
        result_from_json({**old, "kind": "profile"}, "old.json")
    assert str(caught.value) == (
        "old.json: kind 'profile' did not exist in schema asicperf.result/3 (model, op, llm)"
    )


ROOFLINE = RooflineRecord(
    device="test",
    compute_gflops={
        "fp32": CeilingRecord(value=100.0, source="t"),
        "int8": CeilingRecord(value=400.0, source="t"),
    },
    bandwidth_gbs=CeilingRecord(value=10.0, source="t"),
)


def test_a_quantized_layer_is_judged_against_the_int8_ceiling(tmp_path) -> None:
    """MatMulInteger of u8[1, 16] by u8[16, 8]: 128 MACs, 256 ops; 16 + 128 bytes in and
    32 int32 bytes out. At 400 GOP/s int8 and 10 GB/s: max(0.64 ns, 17.6 ns) = 17.6 ns."""
    weights = {"w": np.ones((16, 8), dtype=np.uint8)}
    nodes = [helper.make_node("MatMulInteger", ["x", "w"], ["y"])]
    path = tmp_path / "q.onnx"
    onnx.save(onnx_model(nodes, {"x": (TensorProto.UINT8, [1, 16])}, ["y"], weights), path)
    timing = LayerTiming("q", "MatMulInteger", ("n0",), (0.001,))
    (layer,) = profile_layers([PieceLayer(0, timing)], load_model(path), ROOFLINE)
    assert (layer.dtype, layer.flops, layer.nbytes, layer.bound) == ("int8", 256, 176, "memory")
    assert layer.roofline_ms == pytest.approx(176 / 10.0 / 1e6)
    assert layer.roofline_fraction == pytest.approx(176 / 10.0 / 1e6 / 0.001)


def _matmul_model(tmp_path) -> object:
    """MatMul of f32[64, 64] by a constant f32[64, 64]: 2 x 64^3 = 524288 FLOPs."""
    weights = {"w": np.ones((64, 64), dtype=np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    path = tmp_path / "m.onnx"
    onnx.save(onnx_model(nodes, {"x": (TensorProto.FLOAT, [64, 64])}, ["y"], weights), path)
    return load_model(path)


def test_the_runtime_precision_and_the_algorithm_set_the_ceiling_and_the_work(tmp_path) -> None:
    """The profiler's word over the IR's: a float32 layer OpenVINO ran in i8 is judged against
    the int8 ceiling; a layer computed with 16/36 of the operations (Winograd) on those."""
    model = _matmul_model(tmp_path)
    plain, as_int8, fewer = (
        LayerTiming("m", "MatMul", ("n0",), (1.0,), detail)
        for detail in ({}, {"precision": "i8"}, {"flop_scale": f"{16 / 36:.6f}"})
    )
    layers = profile_layers([PieceLayer(0, t) for t in (plain, as_int8, fewer)], model, ROOFLINE)
    by_detail = {tuple(layer.detail): layer for layer in layers}
    assert by_detail[()].dtype == "fp32" and by_detail[()].flops == 2 * 64**3
    assert by_detail[("precision",)].dtype == "int8"
    assert by_detail[("precision",)].flops == 2 * 64**3
    assert by_detail[("flop_scale",)].flops == round(2 * 64**3 * 16 / 36)
    assert by_detail[("flop_scale",)].dtype == "fp32"


def test_a_fused_layer_moves_only_the_bytes_that_cross_its_boundary(tmp_path) -> None:
    """MatMul f32[1, 16] x [16, 8] + b[8], Relu, fused: x 64 + w 512 + b 32 + y 32 = 640 bytes,
    not the nodes' 608 + 96 + 64 = 768 (h and a never leave the layer). A Gather of 2 rows of a
    [100, 8] table keeps its rule's 16 + 2 * 64 = 144 bytes, less than the 3280 around it."""
    weights = {
        "w": np.ones((16, 8), dtype=np.float32),
        "b": np.ones(8, dtype=np.float32),
        "table": np.ones((100, 8), dtype=np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
        helper.make_node("Gather", ["table", "i"], ["g"]),
    ]
    inputs = {"x": (TensorProto.FLOAT, [1, 16]), "i": (TensorProto.INT64, [2])}
    path = tmp_path / "fused.onnx"
    onnx.save(onnx_model(nodes, inputs, ["y", "g"], weights), path)
    timed = [
        PieceLayer(0, LayerTiming("fused", "MatMul", ("n0", "n1", "n2"), (0.002,))),
        PieceLayer(0, LayerTiming("gather", "Gather", ("n3",), (0.001,))),
    ]
    fused, gather = profile_layers(timed, load_model(path), ROOFLINE)
    assert (fused.nbytes, fused.flops, gather.nbytes) == (640, 2 * 16 * 8 + 8 + 8, 144)
    assert isinstance(fused.nbytes, int)  # a document field typed int


def test_a_layer_that_fuses_its_dequantize_is_judged_as_int8(tmp_path) -> None:
    """DequantizeLinear(u8 x) -> MatMul: fused into one layer, the MatMul reads int8 (a runtime
    runs it as one integer kernel); timed alone, it reads the float its input is."""
    weights = {
        "s": np.array(0.5, dtype=np.float32),
        "z": np.array(0, dtype=np.uint8),
        "w": np.ones((16, 8), dtype=np.float32),
    }
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
        helper.make_node("MatMul", ["xf", "w"], ["y"]),
    ]
    path = tmp_path / "qdq.onnx"
    onnx.save(onnx_model(nodes, {"x": (TensorProto.UINT8, [1, 16])}, ["y"], weights), path)
    timed = [
        PieceLayer(0, LayerTiming("fused", "QGemm", ("n0", "n1"), (0.002,))),
        PieceLayer(0, LayerTiming("alone", "MatMul", ("n1",), (0.001,))),
    ]
    fused, alone = profile_layers(timed, load_model(path), ROOFLINE)
    assert (fused.dtype, alone.dtype) == ("int8", "fp32")
