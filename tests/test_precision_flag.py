"""A run whose target changed the precision on its own: who chose a precision, where a target's
compile record keeps it, the result field that stores it (old documents read without it), and
every view that flags it beside the drift it caused ("vendor default: bfloat16"), silent where
the model or the user chose the precision, or where the target recorded none."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import onnx
import pytest
from llm_results import llm_result
from precision_targets import VENDOR_BF16
from report_documents import model_document, read
from rich.console import Console

from runner.cli import main
from runner.llm_bench.engine import bench_llm
from runner.report.compare import compare_results
from runner.report.html import render_html
from runner.report.show import batch_summary, show_renderables
from runner.results.files import Result
from runner.results.llm import LlmResult
from runner.results.model import ModelResult, PrecisionRecord
from runner.results.record import ResultError
from runner.run_command import _document, _print
from targets.isolation import JobResult
from targets.precision_choice import PrecisionChoice, precision_of
from tests.html_pages import section_of, table_rows
from tests.small_decoders import small_decoder

VENDOR = "precision_targets:VendorDefaultTarget"
FLAG = "vendor default: bfloat16"
BADGE = f'<span class="badge warn">{FLAG}</span>'
AS_IN_MODEL = PrecisionChoice.decide(model="float32", requested="default", effective="float32")
RECORD = PrecisionRecord(
    model="float32", requested="default", effective="bfloat16", chosen_by="target"
)


def test_who_chose_the_precision_and_what_a_report_says_of_it() -> None:
    def said(choice: PrecisionChoice) -> tuple[str, str | None, str]:
        return choice.chosen_by, choice.flag, choice.description

    assert said(VENDOR_BF16) == ("target", FLAG, "bfloat16 (target default)")
    assert said(AS_IN_MODEL) == ("model", None, "float32 (as in the model)")
    asked = PrecisionChoice.decide(model="float32", requested="float16", effective="float16")
    assert said(asked) == ("user", None, "float16 (asked)")
    ignored = PrecisionChoice.decide(model="float32", requested="float16", effective="float32")
    assert said(ignored) == ("user", "asked float16, ran float32", "float32 (asked float16)")
    # a bfloat16 model the target ran as it is: nobody changed anything
    kept = PrecisionChoice.decide(model="bfloat16", requested="default", effective="bfloat16")
    assert said(kept) == ("model", None, "bfloat16 (as in the model)")
    assert PrecisionChoice.from_json(VENDOR_BF16.to_json()) == VENDOR_BF16


def test_precision_of_looks_into_the_segments_of_a_partitioned_compile() -> None:
    plain = {"precision": "as in the model"}  # what targets that record no choice write
    nested = {"segments": [plain, {"segments": [plain, {"precision": VENDOR_BF16.to_json()}]}]}
    assert precision_of(nested) == VENDOR_BF16
    assert precision_of({"segments": [plain, plain]}) is None
    assert precision_of({}) is None
    own = {"precision": AS_IN_MODEL.to_json(), "segments": [{"precision": VENDOR_BF16.to_json()}]}
    assert precision_of(own) == AS_IN_MODEL


def _document_with(choice: PrecisionChoice | None) -> dict[str, Any]:
    """A model result (batches 1 and 8) whose target recorded `choice` for every batch."""
    document = model_document()
    if choice is not None:
        document["precision"] = choice.to_json()
        for batch in document["batches"]:
            batch["precision"] = choice.to_json()
    return document


def _model(choice: PrecisionChoice | None) -> ModelResult:
    result = read(_document_with(choice))
    assert isinstance(result, ModelResult)
    return result


def test_a_model_result_keeps_its_precision_and_each_batchs_through_json() -> None:
    result = _model(VENDOR_BF16)
    assert result.precision == RECORD
    assert [batch.precision for batch in result.batches] == [RECORD, RECORD]
    written = result.to_json()
    assert written["precision"] == written["batches"][1]["precision"] == VENDOR_BF16.to_json()
    assert read(written) == result
    plain = _model(None).to_json()
    assert "precision" not in plain and all("precision" not in b for b in plain["batches"])


def test_a_document_written_before_the_precision_was_recorded_still_reads() -> None:
    version_2 = {**model_document(), "schema": "asicperf.result/2"}
    result = read(version_2)
    assert isinstance(result, ModelResult) and result.migrated_from == "2"
    assert result.precision is None and result.batches[0].precision is None


def test_a_precision_of_the_wrong_type_is_a_one_line_error() -> None:
    document = _document_with(VENDOR_BF16)
    document["batches"][1]["precision"]["effective"] = 16
    with pytest.raises(ResultError) as error:
        read(document)
    assert str(error.value) == "test document: batches[1].precision.effective must be str, not int"


def _rendered(*renderables: Any, color: bool = False) -> str:
    """As `runner report show` prints them to a file (or, with `color`, to a terminal)."""
    stream = io.StringIO()
    console = Console(
        file=stream, width=160, force_terminal=color, color_system="standard" if color else None
    )
    for renderable in renderables:
        console.print(renderable)
    return stream.getvalue()


def _words(out: str) -> str:
    """`out` with every run of blanks and line breaks as one space: a table's title wraps."""
    return " ".join(out.split())


def _cells(out: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]


def test_show_flags_the_drift_and_names_the_precision_the_target_chose() -> None:
    out = _rendered(*show_renderables(_model(VENDOR_BF16), "r/result.json"))
    lines = [line.rstrip() for line in out.splitlines()]
    assert "precision  bfloat16 (target default)" in lines
    # the details table: mean 2.5, p90 4, no time per batch, 4 queries, 0.1 s, max |Δ| 0
    assert ["1", "2.500", "4.000", "-", "4", "0.10", f"0 ({FLAG})"] in _cells(out)
    assert ["8", "2.500", "4.000", "-", "4", "0.10", f"0 ({FLAG})"] in _cells(out)
    assert f"drift against the reference at batch 1 ({FLAG})" in out
    # the flag is styled as a warning: bold yellow on a terminal
    coloured = _rendered(*batch_summary(_model(VENDOR_BF16), Path("r")), color=True)
    assert f"\x1b[1;33m ({FLAG})\x1b[0m" in coloured


@pytest.mark.parametrize("choice", [AS_IN_MODEL, None])
def test_show_flags_nothing_the_model_chose_or_the_target_did_not_record(choice) -> None:
    out = _rendered(*show_renderables(_model(choice), "r/result.json"))
    assert "vendor default" not in out
    header = [line.rstrip() for line in out.splitlines() if line.startswith("precision")]
    assert header == ([] if choice is None else ["precision  float32 (as in the model)"])
    assert ["1", "2.500", "4.000", "-", "4", "0.10", "0"] in _cells(out)


def test_compare_marks_every_row_of_the_flagged_side_and_warns() -> None:
    comparison = compare_results(_model(None), _model(VENDOR_BF16), "a", "b")
    assert {row.precision for row in comparison.rows} == {f"B: {FLAG}"}
    differences = {d.field: (d.a, d.b) for d in comparison.differences}
    assert differences == {"precision": (None, "bfloat16 (target default)")}
    assert comparison.warnings == (
        f"B: {FLAG}: the ratios and its drift include the precision its target chose",
    )
    assert comparison.to_json()["rows"][0]["precision"] == f"B: {FLAG}"


def test_compare_prints_a_precision_column_only_where_a_side_is_flagged(tmp_path, capsys) -> None:
    paths = {}
    for name, choice in (("plain", None), ("model", AS_IN_MODEL), ("vendor", VENDOR_BF16)):
        paths[name] = tmp_path / name / "result.json"
        paths[name].parent.mkdir()
        paths[name].write_text(json.dumps(_document_with(choice)))
    assert main(["report", "compare", str(paths["plain"]), str(paths["vendor"])]) == 0
    out = capsys.readouterr().out
    assert f"warning: B: {FLAG}: the ratios and its drift include" in out
    assert "precision: not recorded (A) vs bfloat16 (target default) (B)" in out
    rows = _cells(out)
    marked = [(row[0], row[-1]) for row in rows if row[-1]]
    assert marked == [("batch 1", f"B: {FLAG}"), ("batch 8", f"B: {FLAG}")]
    assert ["", "mean ms", "2.500", "2.500", "1", "", ""] in rows
    assert main(["report", "compare", str(paths["model"]), str(paths["model"])]) == 0
    out = capsys.readouterr().out
    assert "precision" not in out and "warning" not in out


def _page(*results: Result) -> str:
    return render_html([(f"results/{i}", r) for i, r in enumerate(results)], {})


def test_html_puts_a_badge_beside_the_drift_of_a_flagged_result() -> None:
    page = _page(_model(VENDOR_BF16), _model(AS_IN_MODEL))
    flagged, plain = table_rows(section_of(page, "summary"))
    assert flagged[2] == "onnxruntime 1.0, bfloat16 (target default)"
    assert flagged[8] == f"1 {BADGE}"  # the worst cosine against the reference
    assert plain[2] == "onnxruntime 1.0, float32 (as in the model)" and plain[8] == "1"
    batches = section_of(page, "batches")
    assert f"Precision: bfloat16 (target default) at batch 1, 8 {BADGE}</p>" in batches
    assert "Precision: float32 (as in the model) at batch 1, 8</p>" in batches
    assert f"<p>tiny · onnxruntime · no passes: {BADGE}</p>" in section_of(page, "drift")
    assert page.count(BADGE) == 3


def test_html_says_nothing_of_a_precision_no_target_recorded() -> None:
    page = _page(_model(None))
    assert "badge warn" not in page and "Precision:" not in page
    assert table_rows(section_of(page, "summary"))[0][2] == "onnxruntime 1.0"


def _llm(choice: PrecisionChoice | None) -> LlmResult:
    precision = None if choice is None else PrecisionRecord.from_json(choice.to_json())
    return dataclasses.replace(llm_result(), precision=precision)


def test_an_llm_result_is_flagged_beside_its_accuracy_in_every_view() -> None:
    flagged = _llm(VENDOR_BF16)
    assert LlmResult.from_json(flagged.to_json()).precision == RECORD
    out = _rendered(*show_renderables(flagged, "r/result.json"))
    assert "precision  bfloat16 (target default)" in [line.rstrip() for line in out.splitlines()]
    assert "(single-stream, cpu: Test CPU) in bfloat16 (target default)" in _words(out)
    assert f"accuracy on real text, against the reference ({FLAG})" in out
    section = section_of(_page(flagged), "llm")
    assert "precision: bfloat16 (target default).</p>" in section
    assert f"<h3>Accuracy on real text, against the reference {BADGE}</h3>" in section
    summary = table_rows(section_of(_page(flagged), "summary"))[0]
    assert summary[7] == f'perplexity 12.5 <span class="badge good">pass</span> {BADGE}'
    comparison = compare_results(_llm(None), flagged, "a", "b")
    assert {row.key for row in comparison.rows if row.precision == f"B: {FLAG}"} == {
        "batch 1, prompt 512, gen 128",
        "batch 4, prompt 512, gen 128",
        "accuracy",
    }
    plain = _rendered(*show_renderables(_llm(AS_IN_MODEL), "r/result.json"))
    assert "vendor default" not in plain and "badge warn" not in _page(_llm(AS_IN_MODEL))


def _job(target: str, choice: PrecisionChoice | None) -> JobResult:
    segment = {"precision": "as in the model" if choice is None else choice.to_json()}
    return JobResult(
        target=target,
        ok=True,
        outputs=[],
        compile_record={"wall_ms": 1.5, "segments": [segment]},
        run_ms=0.25,
    )


def test_run_prints_the_flag_beside_the_compile_and_run_figures(capsys) -> None:
    document = _document("m", [_job("vendor", VENDOR_BF16), _job("reference", None)], [], [])
    assert [run["precision"] for run in document["runs"]] == [VENDOR_BF16.to_json(), None]
    document["compare"] = {"reference": "reference", "drift": []}
    _print(document)
    out = capsys.readouterr().out
    assert ["vendor", "ok", "-", "1.5", "0.25", "-", FLAG] in _cells(out)
    assert ["reference", "ok", "-", "1.5", "0.25", "-", "-"] in _cells(out)
    assert f"drift against reference (vendor: {FLAG})" in _words(out)
    _print(_document("m", [_job("reference", None)], [], []))
    assert "precision" not in capsys.readouterr().out


def test_bench_records_each_batchs_precision_and_flags_its_drift(relu_path, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["bench", "--model", str(relu_path), "--target", VENDOR, "--out", str(out)]
    assert main([*args, "--min-duration", "0.05", "--min-queries", "64"]) == 0
    printed = capsys.readouterr().out
    assert ") in bfloat16 (target default)" in _words(printed)
    assert [f"0 ({FLAG})"] == [row[-1] for row in _cells(printed) if row[-1].startswith("0")]
    result = json.loads((out / "result.json").read_text())
    assert result["precision"] == result["batches"][0]["precision"] == VENDOR_BF16.to_json()


def test_llm_bench_records_the_precision_of_its_one_compile(tmp_path) -> None:
    from test_llm_bench import Recorded, plan_for

    path = tmp_path / "decoder.onnx"
    onnx.save(small_decoder(), path)
    plan = dataclasses.replace(
        plan_for(path, target=VENDOR, batch_sizes=(1,), gen_len=2), accuracy=False
    )
    result = bench_llm(plan, tmp_path / "result", False, Recorded())
    assert result.precision == RECORD
