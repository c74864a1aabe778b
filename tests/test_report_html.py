"""`runner report html`: each section's numbers, chart marks at predicted coordinates,
escaping of every name taken from a result, and the command's file handling."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from report_documents import (
    EXACT,
    audited_pass,
    batch,
    drift_output,
    legacy_model_document,
    model_document,
    op_case,
    op_document,
    read,
    write,
)

import runner.report_commands as report_commands
from runner.cli import main
from runner.report.costs import CostOverride
from runner.report.html import render_html
from runner.report.svg import Frame
from targets.hardware.database import all_specs
from tests.html_pages import section_of, table_rows

ORT = model_document("tiny", "onnxruntime", None, {1: 100.0, 8: 400.0})
TVM = model_document("tiny", "tvm", "O1", {1: 50.0, 8: 150.0, 32: 600.0})
GEMM = op_case("gemm", "numpy", flops=2000, nbytes=100, gflops=50.0)  # intensity 20
SOFTMAX = op_case("softmax", "tvm", flops=100, nbytes=200, gflops=2.0)  # intensity 0.5
COPY = op_case("memcpy", "numpy", flops=0, nbytes=1000, gflops=5.0)  # 5 GB/s of 10


def _page(*documents: dict, overrides: dict | None = None) -> str:
    named = [(f"results/{i}", read(d)) for i, d in enumerate(documents)]
    return render_html(named, overrides or {})


def _titles(fragment: str, css: str) -> list[str]:
    return re.findall(rf'class="{css}"[^>]*><title>(.*?)</title>', fragment)


def test_summary_has_one_row_per_result_with_its_figures() -> None:
    accuracy = {"metric": "top-1", "value": 0.9, "threshold": 0.95, "passed": False}
    worse = drift_output([0] * 9 + [2, 8, 0, 0], cosine=0.99, max_abs=0.5)
    int8 = model_document("tiny", "onnxruntime", "int8", accuracy=accuracy, outputs=[worse])
    rows = table_rows(section_of(_page(ORT, int8, op_document([GEMM])), "summary"))
    where = "Test CPU; 0123456789; 2026-01-02T03:04:05+00:00"
    fail = 'top-1 0.9 <span class="badge bad">fail</span>'
    assert rows == [
        ["model", "tiny", "onnxruntime 1.0", "none", "8", "400", "4", "—", "1", where, "results/0"],
        [
            "model",
            "tiny",
            "onnxruntime 1.0",
            "int8",
            "8",
            "400",
            "4",
            fail,
            "0.99",
            where,
            "results/1",
        ],
        ["op", "tiny-suite", "numpy", "—", "—", "—", "—", "—", "—", where, "results/2"],
    ]


def test_throughput_points_sit_at_their_batch_and_samples_per_second() -> None:
    invalid = model_document("tiny", "tvm", "O1", {1: 50.0, 8: 150.0, 32: 600.0})
    invalid["batches"][2] = batch(32, 600.0, valid=False)
    section = section_of(_page(ORT, invalid), "throughput")
    frame = Frame()
    x = frame.x_scale(1 / 1.5, 32 * 1.5, log=True)
    y = frame.y_scale(0.0, 600.0)  # 50..600 spans 12x: linear, up to a round 600
    assert f'<circle cx="{x(8):g}" cy="{y(400):g}" r="5" class="point"' in section
    assert f'<circle cx="{x(32):g}" cy="{y(600):g}" r="5" class="point invalid"' in section
    assert section.count("<polyline") == 2
    assert _titles(section, "point")[:2] == [
        "tiny · onnxruntime · no passes: batch 1, 100 samples/s, p99 4 ms, VALID (enough queries)",
        "tiny · onnxruntime · no passes: batch 8, 400 samples/s, p99 4 ms, VALID (enough queries)",
    ]
    assert _titles(section, "point invalid") == [
        "tiny · tvm · O1: batch 32, 600 samples/s, p99 4 ms, INVALID (too few queries)"
    ]


def test_latency_boxes_from_raw_samples_and_from_summary_statistics() -> None:
    section = section_of(_page(ORT, op_document([GEMM])), "latency")
    boxes = re.findall(r'<g class="box"><title>(.*?)</title>', section)
    assert boxes == [
        "batch 1: min 1, p10 1, p25 1, median 2, p75 3, p90 4, p99 4, max 4 ms (4 samples)",
        "batch 8: min 1, p10 1, p25 1, median 2, p75 3, p90 4, p99 4, max 4 ms (4 samples)",
        "gemm · numpy: min 10, p10 10, p25 10, median 20, p75 30, p90 40, p99 40, max 40 µs "
        "(4 samples)",
    ]
    legacy = section_of(_page(legacy_model_document()), "latency")
    assert "Raw latencies were not recorded" in legacy
    assert re.findall(r'<g class="box"><title>(.*?)</title>', legacy) == [
        "batch 1: min 1, median 2, p90 4, p99 4, max 4 ms (summary statistics only)"
    ]


def test_drift_histogram_draws_a_bar_per_non_empty_bin_and_result() -> None:
    worse = drift_output([0] * 9 + [2, 8, 0, 0], cosine=0.99, max_abs=0.5)
    int8 = model_document("tiny", "onnxruntime", "int8", outputs=[worse])
    section = section_of(_page(ORT, int8), "drift")
    assert section.count('class="bar"') == 3  # ORT: bin "0"; int8: two bins
    assert _titles(section, "bar") == [
        "tiny · onnxruntime · no passes (batch 1): 10 of 10 elements (100%) with |diff| 0",
        "tiny · onnxruntime · int8 (batch 1): 2 of 10 elements (20%) with |diff| [0.01, 0.1)",
        "tiny · onnxruntime · int8 (batch 1): 8 of 10 elements (80%) with |diff| [0.1, 1)",
    ]


def test_audit_table_has_a_row_per_pass_and_no_change_without_numbers() -> None:
    moved = drift_output([0] * 13, cosine=0.999, max_abs=0.25)
    audit = {
        "fingerprint": "sha256:00",
        "passes": [
            audited_pass(1, "fold-constants"),
            audited_pass(2, "quantize-int8", (8, 24), vs_input=[moved, EXACT]),
        ],
    }
    section = section_of(_page(ORT, model_document(pipeline="int8", audit=audit)), "audit")
    assert "tiny · onnxruntime · int8" in section and "no passes" not in section
    assert table_rows(section) == [
        ["1", "fold-constants", "no", "8 → 8", "1.5", "no change", "no change"],
        ["2", "quantize-int8", "yes", "8 → 24", "1.5", "0.25", "0.999"],
    ]


def test_roofline_plots_cases_with_flops_and_lists_the_rest() -> None:
    section = section_of(_page(op_document([GEMM, SOFTMAX, COPY])), "roofline")
    assert section.count("<svg") == 1
    assert _titles(section, "point") == [
        "gemm fp32 64x64 · numpy: 50 GFLOP/s at 20 FLOP/byte; 50% of peak (compute bound)",
        "softmax fp32 64x64 · tvm: 2 GFLOP/s at 0.5 FLOP/byte; 2% of peak (compute bound)",
    ]
    assert ">fp32: 100</text>" in section and ">int8: 400</text>" in section
    assert ">memory 10 GB/s</text>" in section
    assert table_rows(section) == [["memcpy fp32 64x64 · numpy", "5", "50"]]


def test_hardware_costs_per_dollar_and_watt_and_datasheet_charts() -> None:
    unknown = model_document("tiny", "tvm", "int8", hardware=None)
    overrides = {"host": CostOverride(usd=0.1, hourly=True, watts=10.0)}
    section = section_of(_page(ORT, unknown, overrides=overrides), "hardware")
    rows = table_rows(section)
    assert rows[0][:7] == [
        "tiny · onnxruntime · no passes",
        "host",
        "400",
        "$0.1/h",
        "14,400,000 samples per $ (hourly rate)",
        "10",
        "40",
    ]
    assert rows[1][3:7] == ['<span class="nowrap">unknown: pass --price/--watts</span>'] * 4
    fp16_per_watt = [s for s in all_specs() if s.peak("fp16") and s.tdp_w]
    chart = section.split('aria-label="Datasheet: fp16 TFLOPS per watt (TDP)"')[1]
    chart = chart.split("</svg>")[0]
    assert chart.count('class="bar"') == len(fp16_per_watt)
    assert "Datasheet: int8 TOPS per watt (TDP)" in section  # a result ran int8


def test_every_name_from_a_result_is_escaped() -> None:
    script = "<script>alert(1)</script>"
    model = model_document(script, "<i>target</i>", "<b>pipe</b>")
    op = op_document([op_case("gemm", "<img src=x>", 2000, 100, 50.0)], suite="<u>suite</u>")
    page = _page(model, op)
    for raw in (script, "<i>", "<b>", "<img", "<u>"):
        assert raw not in page
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt; · &lt;i&gt;target&lt;/i&gt; · &lt;b&gt;pipe" in page
    )
    assert "&lt;img src=x&gt;" in page and "&lt;u&gt;suite&lt;/u&gt;" in page


def test_sections_without_results_say_so_and_draw_no_empty_chart() -> None:
    ops_only = _page(op_document([GEMM]))
    assert "No model results." in section_of(ops_only, "throughput")
    models_only = _page(ORT)
    assert "No op-level results." in section_of(models_only, "roofline")
    assert "No model results with a pass audit." in section_of(models_only, "audit")
    for page in (ops_only, models_only):
        charts = re.findall(r"<svg.*?</svg>", page, re.S)
        assert charts and all("<title>" in chart for chart in charts)


@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path, "ort", ORT), write(tmp_path, "ops", op_document([GEMM, COPY]))


def test_cli_writes_the_page_atomically(results, tmp_path, monkeypatch, capsys) -> None:
    written: list[Path] = []
    original = report_commands.write_text_atomically

    def spy(path: Path, text: str) -> Path:
        written.append(Path(path))
        return original(path, text)

    monkeypatch.setattr(report_commands, "write_text_atomically", spy)
    out = tmp_path / "report.html"
    assert main(["report", "html", *map(str, results), "-o", str(out)]) == 0
    assert written == [out]
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "2 results" in page
    assert f"report: {out}" in capsys.readouterr().out


def test_cli_bad_result_is_one_line_and_no_file(results, tmp_path, capsys) -> None:
    out = tmp_path / "report.html"
    missing = tmp_path / "missing"
    assert main(["report", "html", str(results[0]), str(missing), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"runner: error: {missing}: no such result file\n"
    assert not out.exists()


def test_cli_renders_a_version_1_result(tmp_path, capsys) -> None:
    old = write(tmp_path, "old", legacy_model_document("old-model"))
    out = tmp_path / "report.html"
    assert main(["report", "html", str(old), "-o", str(out)]) == 0
    (row,) = table_rows(section_of(out.read_text(encoding="utf-8"), "summary"))
    assert row[:3] == ["model (upgraded from 1)", "old-model", "onnxruntime 1.0"]
    assert row[9] == "cpu: Old CPU; no git; unknown time"


def test_page_is_self_contained() -> None:
    page = _page(ORT, op_document([GEMM]))
    for fetching in ("<script", "<link", "<img", "src=", "@import", "url("):
        assert fetching not in page
    assert re.findall(r'href="([^"]*)"', page) == [
        "#summary",
        "#batches",
        "#throughput",
        "#latency",
        "#drift",
        "#audit",
        "#llm",
        "#roofline",
        "#profile",
        "#hardware",
    ]


def test_batches_show_loadgens_notes_and_link_its_logs_relative_to_the_page(
    tmp_path, capsys
) -> None:
    """The page in another folder than the result: each link leads to the log file."""
    document = model_document("tiny", "onnxruntime", None, {1: 100.0})
    logs = ["loadgen/batch-1/mlperf_log_summary.txt", "loadgen/batch-1/mlperf_log_detail.txt"]
    document["batches"][0]["loadgen"] = {
        "scenario": "Offline",
        "target_latency_percentile": 0.9,
        "warnings": ["warning_generic_message: <slow> start"],
        "logs": logs,
    }
    document["accuracy"] = {"metric": "top-1", "value": 1.0, "logs": ["acc run/a#1.json"]}
    folder = write(tmp_path, "my run", document)
    for log in [*logs, "acc run/a#1.json"]:
        (folder / log).parent.mkdir(parents=True, exist_ok=True)
        (folder / log).write_text("log")
    page = tmp_path / "pages" / "report.html"
    page.parent.mkdir()
    assert main(["report", "html", str(folder), "-o", str(page)]) == 0
    section = section_of(page.read_text(encoding="utf-8"), "batches")
    hrefs = re.findall(r'<a href="([^"]+)">([^<]+)</a>', section)
    assert hrefs == [
        ("../my%20run/loadgen/batch-1/mlperf_log_summary.txt", "summary"),
        ("../my%20run/loadgen/batch-1/mlperf_log_detail.txt", "detail"),
        ("../my%20run/acc%20run/a%231.json", "a#1"),
    ]
    for href, _ in hrefs:
        assert (page.parent / unquote(href)).read_text() == "log"
    assert "<br>LoadGen warning: warning_generic_message: &lt;slow&gt; start" in section
    assert "offline: LoadGen times every sample from the start of its one query" in section
