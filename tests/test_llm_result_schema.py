"""Schema version 3, which adds the `llm` kind: an LLM result round-trips through its file,
a version 2 model or op document upgrades to it unchanged but for `migrated_from`, a version 2
document of a kind version 2 did not have and a version 4 document are refused, and the
reports treat an upgraded version 2 document as one that recorded its environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llm_results import llm_result
from report_documents import model_document, op_case, op_document, read, write

from runner.cli import main
from runner.report.compare import compare_results
from runner.results.document import SCHEMA
from runner.results.files import read_result, result_from_json, write_result
from runner.results.record import ResultError


def test_schema_is_version_3_and_an_llm_result_round_trips_through_its_file(
    tmp_path: Path,
) -> None:
    result = llm_result()
    path = write_result(tmp_path / "llm" / "result.json", result)
    assert read_result(tmp_path / "llm") == result
    document = json.loads(path.read_text(encoding="utf-8"))
    assert (document["schema"], document["kind"]) == (SCHEMA, "llm") == ("asicperf.result/4", "llm")
    assert document["runs"][1]["decode_tokens_per_s"] == 250.0
    assert document["anchor"]["decode_tokens_per_s"] == 200.0
    assert "migrated_from" not in document


def test_schema_leaves_out_an_llm_results_anchor_when_none_was_measured(tmp_path: Path) -> None:
    result = llm_result(anchor=None, accuracy=None)
    path = write_result(tmp_path / "result.json", result)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert "anchor" not in document and document["accuracy"] is None
    assert read_result(path) == result


@pytest.mark.parametrize(
    "current",
    [model_document(), op_document([op_case("gemm", "numpy", 2000, 100, 50.0)])],
    ids=["model", "op"],
)
def test_a_version_2_document_upgrades_unchanged_but_for_migrated_from(current: dict) -> None:
    old = {**current, "schema": "asicperf.result/2"}
    upgraded = result_from_json(json.loads(json.dumps(old)), "old.json")
    assert upgraded.migrated_from == "2"
    written = upgraded.to_json()
    assert written.pop("migrated_from") == "2"
    assert written == read(current).to_json()


def test_a_version_2_document_of_a_kind_version_2_lacked_is_refused() -> None:
    old = {**llm_result().to_json(), "schema": "asicperf.result/2"}
    with pytest.raises(ResultError) as caught:
        result_from_json(old, "old.json")
    assert str(caught.value) == (
        "old.json: kind 'llm' did not exist in schema asicperf.result/2 (model, op)"
    )


def test_a_version_5_document_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(json.dumps({**llm_result().to_json(), "schema": "asicperf.result/5"}))
    with pytest.raises(ResultError) as caught:
        read_result(path)
    assert str(caught.value) == (
        f"{path}: schema asicperf.result/5 is newer than this asicperf reads "
        "(asicperf.result/4); upgrade asicperf to read it"
    )


def test_reports_of_an_upgraded_version_2_document_keep_its_environment(
    tmp_path: Path, capsys
) -> None:
    old = {**model_document(), "schema": "asicperf.result/2"}
    path = write(tmp_path, "old", old)
    assert main(["report", "show", str(path)]) == 0
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines[1] == "read from schema version 2"
    assert "host      Test CPU (2 cores, 2 threads, 4.0 GiB)" in lines
    newer = model_document()
    newer["environment"]["host"]["cpu"] = "Other CPU"
    comparison = compare_results(read(old), read(newer), "old", "new")
    assert [(d.field, d.a, d.b) for d in comparison.differences] == [
        ("host", "Test CPU, 2 cores", "Other CPU, 2 cores")
    ]
