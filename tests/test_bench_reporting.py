"""What a bench result says and shows: node and FLOP coverage per batch with a warning when work
ran on the fallback path, why each batch size is or is not the best one, and a summary that
stays readable at 80 columns; in the terminal and in the HTML report."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from bench_models import save_gemm_relu
from bench_targets import SleepyTarget
from report_documents import batch, model_document, read
from rich.console import Console

from runner.bench.results import batch_choice
from runner.cli import main
from runner.report.html import render_html
from runner.report.show import batch_summary
from runner.results.files import read_result
from runner.results.model import BatchResult, DriftRecord, LatencyStats

SLEEPY = "bench_targets:SleepyTarget"  # every query takes 5 ms
PARTIAL = "fake_targets:PartialTarget"  # runs MatMul, Add and Relu only
# LoadGen's early stopping at single-stream's p90 needs 64 queries for a VALID run
QUICK = ["--min-duration", "0.05", "--min-queries", "64"]


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    SleepyTarget.compiled_batches.clear()
    SleepyTarget.loaded_batches.clear()


def _bench_json(capsys, model: Path, target: str, out: Path, *extra: str) -> dict:
    args = ["bench", "--model", str(model), "--target", target, "--out", str(out), "--json"]
    assert main([*args, *QUICK, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match[1]


def test_model_result_carries_node_and_flop_coverage_per_batch(relu_path, tmp_path, capsys):
    doc = _bench_json(capsys, relu_path, SLEEPY, tmp_path / "out", "--batch", "1,2")
    for measured in doc["batches"]:
        assert measured["coverage"] == {
            "nodes": 1,
            "fallback_nodes": 0,
            "node_coverage": 1.0,
            "flop_coverage": 1.0,
        }
    stored = json.loads((tmp_path / "out" / "batch_2.json").read_text())
    assert stored["batch"]["coverage"]["node_coverage"] == 1.0


def test_fallback_work_is_warned_in_summary_and_html(tmp_path, capsys):
    """Gemm (24 FLOPs per sample) falls back, Relu (3) runs on the partial target."""
    model = save_gemm_relu(tmp_path / "gemm_relu.onnx")
    args = ["bench", "--model", str(model), "--target", PARTIAL, "--out", str(tmp_path / "out")]
    assert main([*args, *QUICK]) == 0
    out = capsys.readouterr().out
    warning = (
        "WARNING: work ran on the reference fallback path, not on partial, so these figures "
        "measure it in part: batch 1: 1 of 2 nodes, 88.9% of FLOPs"
    )
    assert warning in " ".join(out.split())
    assert re.search(r"│ 1 +│ [\d.]+ +│ [\d.]+ +│ [\d.]+ +│ 50% +│ 11.1% +│ VALID", out)
    section = _section(render_html([("out", read_result(tmp_path / "out"))], {}), "batches")
    assert warning in section and "<td class=num>50%</td><td class=num>11.1%</td>" in section


def test_no_fallback_warning_when_everything_ran_on_target(relu_path, tmp_path, capsys):
    args = ["bench", "--model", str(relu_path), "--target", SLEEPY, "--out", str(tmp_path / "o")]
    assert main([*args, *QUICK]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_best_batch_none_names_the_bound_and_each_reason(relu_path, tmp_path, capsys):
    """Every query takes 5 ms: VALID runs, all over a 1 ms bound."""
    args = ["bench", "--model", str(relu_path), "--target", SLEEPY, "--out", str(tmp_path / "o")]
    assert main([*args, *QUICK, "--batch", "1,2", "--latency-bound", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(
        "best batch size: none meets the rules (rule: VALID, p99 ≤ 1 ms, the most samples/s)"
    )
    assert re.fullmatch(r"  batch 1: p99 [\d.]+ ms > bound 1 ms", lines[start + 1])
    assert re.fullmatch(r"  batch 2: p99 [\d.]+ ms > bound 1 ms", lines[start + 2])
    result = read_result(tmp_path / "o")
    assert result.latency_bound_ms == 1.0 and result.best_batch is None
    section = _section(render_html([("o", result)], {}), "batches")
    assert "p99 ≤ 1 ms, the most samples/s): none meets the rules." in section
    assert len(re.findall(r"<td>p99 [\d.]+ ms &gt; bound 1 ms</td>", section)) == 2


def test_best_batch_reasons_name_invalid_and_slower_batches():
    def measured(size: int, qps: float, p99: float, valid: bool = True) -> BatchResult:
        return BatchResult(
            batch_size=size,
            qps=qps,
            latency_ms=LatencyStats(mean=p99, p50=p99, p90=p99, p99=p99),
            valid=valid,
            why="min queries not satisfied (3 queries, min 64)" if not valid else "ok",
            queries=1,
            drift=DriftRecord(outputs=()),
        )

    batches = [
        measured(1, 100, 2),
        measured(8, 400, 9),
        measured(32, 900, 212),
        measured(64, 1, 1, False),
    ]
    assert [c.reason for c in batch_choice(batches, 100.0, "single-stream")] == [
        "fewer samples/s than batch 8",
        "best: the most samples/s with p99 ≤ 100 ms",
        "p99 212 ms > bound 100 ms",
        "INVALID: min queries not satisfied (3 queries, min 64)",
    ]


def test_summary_stays_readable_at_80_columns():
    document = model_document("resnet50", "onnxruntime", "O1", {1: 3869.25, 8: 12345678.5})
    document["batches"][1] = batch(8, 12345678.5, valid=False)
    document["batches"][0]["coverage"] = {
        "nodes": 120,
        "fallback_nodes": 1,
        "node_coverage": 119 / 120,
        "flop_coverage": 0.0045,
    }
    console = Console(width=80, record=True, file=io.StringIO())
    for renderable in batch_summary(read(document), Path("results")):
        console.print(renderable)
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text
    for cell in ("3869.2", "12345678.5", "99.2%", "0.45%", "VALID", "INVALID", "2.000", "4.000"):
        assert f" {cell} " in text, cell
    assert "batch 8: INVALID: too few queries" in text
