"""`runner profile`: the profile document's figures against a profiler whose times are known
(tests/fake_profilers.py) and a host of known ceilings, the sum against the end-to-end latency,
unmapped time kept, the rollups by op type and by pass, and one-line errors before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from fake_profilers import OVERHEAD_MS, UNMAPPED_MS
from onnx import TensorProto, helper
from small_models import onnx_model

from ir.files import CACHE_ENV
from runner.cli import main
from targets.hardware.cpu_peaks import isa_peaks
from targets.hardware.host import CACHE_SCHEMA, HostMeasurement, detect_cpu

PROFILED = "fake_profilers:ProfiledTarget"
COPY_GBS, CLOCK_GHZ = 40.0, 9.0  # the memory roof is the fastest stream: copy


@pytest.fixture(autouse=True)
def known_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    measured = HostMeasurement(300.0, 2048, COPY_GBS, 30.0, 512, 8, 2, "2", "now", 1.0, CLOCK_GHZ)
    document = {"schema": CACHE_SCHEMA, "entries": {detect_cpu().cache_key(): measured.to_json()}}
    (cache / "host.json").write_text(json.dumps(document), encoding="utf-8")
    monkeypatch.setenv(CACHE_ENV, str(cache))


def tiny_model(folder: Path) -> Path:
    """x[batch, 32] -> MatMul (n0) by w[32, 64] -> Add (n1) of b[64] -> Relu (n2)."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((32, 64)).astype(np.float32),
        "b": rng.standard_normal(64).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    path = folder / "tiny.onnx"
    onnx.save(onnx_model(nodes, {"x": (TensorProto.FLOAT, ["batch", 32])}, ["y"], weights), path)
    return path


def profile(capsys, tmp_path: Path, *args: str, out: str = "out") -> dict:
    model = str(tiny_model(tmp_path))
    argv = ["profile", model, "--target", PROFILED, "--runs", "3", "--json"]
    assert main([*argv, "--out", str(tmp_path / out), *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_each_layer_is_placed_under_the_roofline_of_its_work(tmp_path, capsys) -> None:
    document = profile(capsys, tmp_path)
    assert (document["schema"], document["kind"]) == ("asicperf.result/4", "profile")
    matmul = document["layers"][0]
    fp32 = isa_peaks(detect_cpu(), CLOCK_GHZ, "measured")["fp32"].gflops
    flops, nbytes = 2 * 32 * 64, (32 + 32 * 64 + 64) * 4  # x, w and h, 4 bytes each
    roof_ms = max(flops / fp32, nbytes / COPY_GBS) / 1e6
    assert matmul["name"] == "MatMul_n0" and matmul["nodes"] == ["n0"]
    assert (matmul["original_nodes"], matmul["op_types"], matmul["passes"]) == (
        ["n0"],
        ["MatMul"],
        [],
    )
    assert (matmul["time_ms"], matmul["spread_ms"], matmul["share"]) == (2.0, 3.0, 2.0 / 3.0)
    assert (matmul["flops"], matmul["bytes"], matmul["dtype"]) == (flops, nbytes, "fp32")
    assert matmul["gflops"] == pytest.approx(flops / 2e-3 / 1e9)
    assert matmul["gbps"] == pytest.approx(nbytes / 2e-3 / 1e9)
    assert matmul["bound"] == "memory"  # 1.1 FLOP/byte, far below the ridge point
    assert matmul["roofline_ms"] == pytest.approx(roof_ms)
    assert matmul["roofline_fraction"] == pytest.approx(roof_ms / 2.0)
    assert matmul["lost_ms"] == pytest.approx(2.0 - roof_ms)
    assert document["roofline"]["bandwidth_gbs"]["value"] == COPY_GBS
    assert document["roofline"]["device"].startswith("host: ")


def test_the_layers_sum_is_checked_against_end_to_end_and_unmapped_time_is_kept(
    tmp_path, capsys
) -> None:
    document = profile(capsys, tmp_path)
    assert [layer["name"] for layer in document["layers"]] == [
        "MatMul_n0",
        "Add_n1",
        "Relu_n2",
        "memcpy",
    ]
    memcpy = document["layers"][-1]
    assert (memcpy["nodes"], memcpy["flops"], memcpy["bound"]) == ([], None, None)
    total = 2.0 + 0.5 + 0.25 + UNMAPPED_MS
    assert document["total_ms"] == total
    assert document["end_to_end_runs_ms"] == [total + OVERHEAD_MS, 2 * total + OVERHEAD_MS, 2.0]
    assert document["end_to_end_ms"] == total + OVERHEAD_MS
    assert document["overhead_ms"] == OVERHEAD_MS
    assert document["unmapped_ms"] == UNMAPPED_MS
    by_op = {group["key"]: group["time_ms"] for group in document["by_op_type"]}
    assert by_op == {"MatMul": 2.0, "Add": 0.5, "Relu": 0.25, "(unmapped)": UNMAPPED_MS}
    by_pass = {group["key"]: group["time_ms"] for group in document["by_pass"]}
    assert by_pass == {"(imported)": 2.75, "(unmapped)": UNMAPPED_MS}


def test_a_fused_layer_keeps_its_original_ids_and_its_pass(tmp_path, capsys) -> None:
    document = profile(capsys, tmp_path, "--pipeline", "fuse-matmul-add")
    gemm = document["layers"][0]
    assert (gemm["name"], gemm["nodes"], gemm["original_nodes"]) == (
        "Gemm_n3",
        ["n3"],
        ["n0", "n1"],
    )
    assert gemm["passes"] == ["fuse-matmul-add"]
    by_pass = {group["key"]: group["time_ms"] for group in document["by_pass"]}
    assert by_pass == {"fuse-matmul-add": 2.0, "(imported)": 0.25, "(unmapped)": UNMAPPED_MS}


def test_the_terminal_view_prints_the_sum_check_and_the_unmapped_time(tmp_path, capsys) -> None:
    model = str(tiny_model(tmp_path))
    argv = ["profile", model, "--target", PROFILED, "--runs", "3", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "layers 3 ms of 3.5 ms end to end (median of 3 runs): 0.5 ms framework overhead" in out
    assert "unmapped: 0.25 ms (8.3%) in 1 layer whose names map to no IR node" in out
    assert "limit: MatMul (1 layer) takes 67% of the layers' time at" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--target", "reference"],
            "target 'reference' has no per-layer profiler (no per-layer profile)",
        ),
        (["--target", PROFILED, "--runs", "0"], "--runs: 0 is out of range (expected 1 or more)"),
        (["--target", PROFILED, "--top", "0"], "--top: 0 is out of range (expected 1 or more)"),
        (["--target", "no-such-target"], "no-such-target"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message) -> None:
    model = str(tiny_model(tmp_path))
    assert main(["profile", model, *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_an_unknown_model_is_one_line_exit_2(tmp_path, capsys) -> None:
    assert main(["profile", "no-such-model", "--target", PROFILED]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'no-such-model': no such file and no zoo model" in err
