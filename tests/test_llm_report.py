"""`runner report show | compare | html` of LLM results: the figures put into a hand-built
result come out where the reader looks for them (runs, server goodput, the llama-bench line
beside the anchor, the accuracy), B/A ratios of matched runs, the charts' points at predicted
coordinates, and a one-line error for a comparison across kinds."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from llm_results import GEN, PROMPT, llm_result, llm_run, scaled
from report_documents import model_document, write

from runner.cli import main
from runner.report.html import render_html
from runner.report.svg import Frame
from runner.results.files import write_result
from runner.results.llm import Goodput, LlmResult
from runner.results.model import AuditedPass, AuditSummary
from tests.html_pages import section_of, table_rows

SERVER_RUNS = (
    llm_run(1, goodput=Goodput(requests_per_s=4.5, met=45, requests=50)),
    llm_run(2, valid=False, goodput=Goodput(requests_per_s=1.25, met=25, requests=50)),
)


def _saved(folder: Path, result: LlmResult) -> Path:
    write_result(folder / "result.json", result)
    return folder


def _show(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[list[str], list[list[str]]]:
    """The lines printed, right-stripped, and the body rows of every table as stripped cells."""
    assert main(["report", "show", str(path)]) == 0
    out = capsys.readouterr().out
    lines = [line.rstrip() for line in out.splitlines()]
    rows = [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in lines
        if line.startswith("│")
    ]
    return lines, rows


def test_show_prints_the_header_runs_llama_bench_line_anchor_and_accuracy(tmp_path, capsys) -> None:
    path = _saved(tmp_path / "llm", llm_result())
    lines, rows = _show(capsys, path)
    assert lines[0] == f"llm result {path}"
    assert "model     smollm2-135m (sha256:" + "12" * 32 + ")" in lines
    assert "target    onnxruntime, 1.23.0, cpu: Test CPU" in lines
    assert "pipeline  none" in lines and "scenario  single-stream" in lines
    assert "KV cache  concatenation" in lines and "compile   1.25 s" in lines
    assert "coverage  400 of 400 nodes on the target (100%), 100% of FLOPs" in lines
    assert "git       0123456789ab" in lines  # the environment, as for a model result
    # batch, prompt, gen, TTFT p50/p99, TPOT p50/p99, verdict
    assert ["1", "512", "128", "20.000", "25.000", "10.000", "12.500", "VALID"] in rows
    assert ["4", "512", "128", "60.000", "75.000", "16.000", "20.000", "INVALID"] in rows
    # prefill, decode and LoadGen's tokens/s, peak RSS and KV cache MiB
    assert ["1", "512", "128", "6400.0", "100.0", "95.0", "300.0", "6.0"] in rows
    assert ["4", "512", "128", "8000.0", "250.0", "237.5", "300.0", "24.0"] in rows
    assert "batch 4, prompt 512, gen 128: INVALID: too few samples [64 < 100]" in lines
    assert (
        f"batch 1, prompt 512, gen 128: LoadGen logs in {path}/loadgen/batch-1: "
        "mlperf_log_summary.txt" in lines
    )
    assert "llama-bench (batch 1): pp512 6400.0 tokens/s · tg128 100.0 tokens/s" in lines
    assert (
        "anchor: llama.cpp 0.3.16, Q4_1 GGUF, 2 threads: pp512 1600.0 tokens/s · "
        "tg128 200.0 tokens/s" in lines
    )
    assert "ours / anchor: pp 4.00, tg 0.50" in lines
    assert [
        "perplexity",
        "12.5000 ± 0.2500 (n_ctx 512, 4 chunks, 1020 tokens scored; text pydoc_data.topics)",
    ] in rows
    assert ["reference perplexity", "12.0000 (on reference)"] in rows
    assert ["KL divergence", "mean 0.0125, p99 0.05, max 0.5 nats over 1020 tokens"] in rows
    assert ["same top-1", "97.50%"] in rows
    assert ["greedy generation", "the first 17 of 64 tokens match the reference's"] in rows
    assert ["verdict", "passed: KL mean 0.0125 ≤ 0.05"] in rows
    assert not any("server" in line for line in lines)  # no server run, no goodput table


def test_show_server_runs_print_their_constraints_and_goodput(tmp_path, capsys) -> None:
    result = llm_result(SERVER_RUNS, scenario="server", anchor=None)
    _, rows = _show(capsys, _saved(tmp_path / "server", result))
    bounds = "TTFT ≤ 500 ms, TPOT ≤ 50 ms at p99"
    assert ["1", "512", "128", bounds, "45 of 50 requests met both (4.50 requests/s)"] in rows
    assert ["2", "512", "128", bounds, "25 of 50 requests met both (1.25 requests/s)"] in rows


def test_show_offline_without_accuracy_anchor_or_batch_1(tmp_path, capsys) -> None:
    """Offline takes no first token: TTFT and TPOT show "-"; what was not measured says so."""
    offline = (llm_run(4, ttft=None, tpot=None),)
    result = llm_result(offline, accuracy=None, anchor=None, scenario="offline")
    lines, rows = _show(capsys, _saved(tmp_path / "offline", result))
    assert ["4", "512", "128", "-", "-", "-", "-", "VALID"] in rows
    assert "llama-bench (batch 1): no batch-1 run" in lines
    assert not any(line.startswith(("anchor", "ours / anchor")) for line in lines)
    assert ["accuracy", "not measured"] in rows


def test_show_prints_the_pipelines_audit(tmp_path, capsys) -> None:
    audited = AuditedPass(
        seq=1,
        pass_name="dce",
        modified=False,
        wall_ms=0.5,
        nodes_before=8,
        nodes_after=8,
        numeric=None,
    )
    audit = AuditSummary(fingerprint="sha256:00", passes=(audited,))
    result = dataclasses.replace(llm_result(), pipeline="dce", resolved_pipeline="dce", audit=audit)
    lines, rows = _show(capsys, _saved(tmp_path / "audited", result))
    assert "pipeline  dce" in lines
    assert ["1", "dce", "no", "8 → 8", "0.500", "-", "-"] in rows


def test_show_warns_when_work_fell_back_to_the_reference_path(tmp_path, capsys) -> None:
    result = llm_result()
    coverage = dataclasses.replace(
        result.coverage, fallback_nodes=40, node_coverage=0.9, flop_coverage=0.75
    )
    path = _saved(tmp_path / "fallback", dataclasses.replace(result, coverage=coverage))
    lines, _ = _show(capsys, path)
    assert "coverage  360 of 400 nodes on the target (90%), 75% of FLOPs" in lines
    assert (
        "WARNING: work ran on the reference fallback path, not on onnxruntime, so these figures "
        "measure it in part: 40 of 400 nodes, 25% of FLOPs" in " ".join(lines)
    )


def test_compare_matches_runs_and_gives_the_ratios_of_tokens_and_accuracy(tmp_path, capsys) -> None:
    a = llm_result()
    b_accuracy = dataclasses.replace(
        a.accuracy,
        perplexity=dataclasses.replace(a.accuracy.perplexity, value=15.0),
        kl_divergence=dataclasses.replace(a.accuracy.kl_divergence, mean=0.05),
    )
    extra = llm_run(1, prompt_len=128)
    b = dataclasses.replace(scaled(a, 2.0), accuracy=b_accuracy)
    b = dataclasses.replace(b, runs=(*b.runs, extra))
    args = ["report", "compare", str(_saved(tmp_path / "a", a)), str(_saved(tmp_path / "b", b))]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "llm" and doc["differences"] == {} and doc["warnings"] == []
    rows = {(row["key"], row["metric"]): row for row in doc["rows"]}
    key = f"batch 4, prompt {PROMPT}, gen {GEN}"
    decode = rows[key, "decode tokens/s"]
    assert (decode["a"], decode["b"], decode["ratio"]) == (250.0, 500.0, 2.0)
    ttft = rows[key, "TTFT p50 ms"]
    assert (ttft["a"], ttft["b"], ttft["ratio"]) == (60.0, 60.0, 1.0)
    assert rows[key, "TPOT p50 ms"]["a"] == 16.0
    assert rows[key, "prefill tokens/s"]["ratio"] == 1.0
    assert (ttft["p_value"], ttft["overlap"]) == (None, None)
    assert ttft["note"] == "no raw samples: significance unknown"
    perplexity = rows["accuracy", "perplexity"]
    assert (perplexity["a"], perplexity["b"], perplexity["ratio"]) == (12.5, 15.0, 1.2)
    assert rows["accuracy", "KL mean"]["ratio"] == 4.0
    assert perplexity["note"] is None  # not a timing: no significance to speak of
    assert doc["only_in_a"] == [] and doc["only_in_b"] == ["batch 1, prompt 128, gen 128"]

    assert main(args) == 0
    out = capsys.readouterr().out
    cells = [[c.strip() for c in line.strip("│").split("│")] for line in out.splitlines()]
    assert ["", "decode tokens/s", "250.0", "500.0", "2", ""] in cells  # under batch 4
    assert ["accuracy", "perplexity", "12.5000", "15.0000", "1.2", ""] in cells
    assert "only in B: batch 1, prompt 128, gen 128" in out


def test_compare_llm_with_model_is_one_line_error(tmp_path, capsys) -> None:
    llm = _saved(tmp_path / "llm", llm_result())
    model = write(tmp_path, "model", model_document())
    assert main(["report", "compare", str(llm), str(model)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"runner: error: cannot compare {llm} (llm result) with {model} (model result): compare "
        "model results with model results, op results with op results, llm results with llm "
        "results, profile results with profile results\n"
    )


def _figures(fragment: str) -> dict[str, str]:
    """Each chart's `<svg>` by its figure's title."""
    found = re.findall(r"<figure><h3>(.*?)</h3>(<svg.*?</svg>)", fragment, re.S)
    return dict(found)


def test_html_draws_the_runs_table_and_charts_over_batch_size_per_prompt_length(
    tmp_path,
) -> None:
    runs = (*llm_result().runs, llm_run(1, prompt_len=128, ttft=(5.0, 6.0), tpot=(8.0, 9.0)))
    result = llm_result(runs)
    page = render_html([(str(_saved(tmp_path / "llm", result)), result)], {}, tmp_path)
    section = section_of(page, "llm")
    rows = table_rows(section)
    verdict = '<span class="badge good">VALID</span> min duration met; 64 samples'
    log = '<a href="llm/loadgen/batch-1/mlperf_log_summary.txt">summary</a>'
    figures = ["1", "512", "128", "20", "25", "10", "12.5", "6,400", "100", "95", "300", "6"]
    assert [*figures, verdict, log] in rows
    assert "<b>llama-bench (batch 1)</b>: pp512 6400.0 tokens/s · tg128 100.0 tokens/s" in section
    assert "<b>ours / anchor</b>: pp 4.00, tg 0.50" in section
    assert ["same top-1", "97.50%"] in rows
    name = "smollm2-135m · onnxruntime · no passes"
    charts = _figures(section)
    assert list(charts) == [
        f"{name}: TTFT p50 by batch size",
        f"{name}: TPOT p50 by batch size",
        f"{name}: decode tokens/s by batch size",
    ]
    frame = Frame()
    x = frame.x_scale(1 / 1.5, 4 * 1.5, log=True)
    ttft = charts[f"{name}: TTFT p50 by batch size"]
    assert ttft.count("<polyline") == 2  # prompt 128 and prompt 512
    y = frame.y_scale(0.0, 60.0)  # 5..60 spans 12x: linear, up to a round 60
    assert f'<circle cx="{x(1):g}" cy="{y(5):g}" r="5" class="point"' in ttft
    assert f'<circle cx="{x(4):g}" cy="{y(60):g}" r="5" class="point invalid"' in ttft
    titles = re.findall(r'class="point[^"]*"[^>]*><title>(.*?)</title>', ttft)
    assert titles == [
        "batch 1, prompt 128, gen 128: TTFT p50 5 ms, VALID (min duration met; 64 samples)",
        "batch 1, prompt 512, gen 128: TTFT p50 20 ms, VALID (min duration met; 64 samples)",
        "batch 4, prompt 512, gen 128: TTFT p50 60 ms, INVALID (too few samples [64 &lt; 100])",
    ]
    legend = re.findall(r"</span>(prompt \d+)</li>", section)
    assert legend == ["prompt 128", "prompt 512"] * 3
    decode = charts[f"{name}: decode tokens/s by batch size"]
    assert "decode tokens/s</text>" in decode
    assert "batch 4, prompt 512, gen 128: 250 decode tokens/s, INVALID" in decode


def test_html_leaves_out_the_token_latency_charts_of_an_offline_result() -> None:
    offline = llm_result((llm_run(4, ttft=None, tpot=None),), scenario="offline", anchor=None)
    section = section_of(render_html([("results/offline", offline)], {}), "llm")
    assert list(_figures(section)) == [
        "smollm2-135m · onnxruntime · no passes: decode tokens/s by batch size"
    ]
    (run,) = [row for row in table_rows(section) if row[0] == "4"]
    assert run[3:7] == ["—", "—", "—", "—"]  # TTFT and TPOT p50/p99


def test_html_of_llm_and_model_results_fills_both_sections(tmp_path, capsys) -> None:
    llm = _saved(tmp_path / "llm", llm_result(SERVER_RUNS, scenario="server"))
    model = write(tmp_path, "model", model_document())
    out = tmp_path / "report.html"
    assert main(["report", "html", str(model), str(llm), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    summary = table_rows(section_of(page, "summary"))
    assert [row[:8] for row in summary] == [
        ["model", "tiny", "onnxruntime 1.0", "none", "8", "400", "4", "—"],
        [
            "llm",
            "smollm2-135m",
            "onnxruntime 1.23.0",
            "none",
            "—",
            "—",
            "—",
            'perplexity 12.5 <span class="badge good">pass</span>',
        ],
    ]
    assert "No model results." not in page and "No LLM results." not in page
    section = section_of(page, "llm")
    goodput = "45 of 50 requests met both (4.50 requests/s)"
    assert ["1", "512", "128", "TTFT ≤ 500 ms, TPOT ≤ 50 ms at p99", goodput] in table_rows(section)
    assert "No LLM results." in section_of(render_html([], {}), "llm")
