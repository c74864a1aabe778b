"""Outputs of `runner ir convert`, `runner passes run` and `runner report html` that cannot be
written: refused in one line (exit 2) before any work, with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_documents import model_document, write

from runner import ir_commands, passes_commands, report_commands
from runner.cli import main


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    """`argv` exits 2 with one `runner: error:` line that contains `message`."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("runner: error: ")
    assert len(captured.err.strip().splitlines()) == 1
    assert message in captured.err


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model load fails the test: the outputs must be refused before it."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(ir_commands, "load_model", forbidden)
    monkeypatch.setattr(passes_commands, "load_model", forbidden)


def test_ir_convert_to_a_folder_fails_before_loading(
    small_model_path, tmp_path, capsys, no_loading
):
    folder = tmp_path / "adir"
    folder.mkdir()
    _refused(
        capsys,
        ["ir", "convert", str(small_model_path), f"{folder}/"],
        f"OUT {folder}: is a folder, expected a file path",
    )
    assert list(folder.iterdir()) == []


def test_ir_convert_external_data_onto_a_folder_fails_before_loading(
    small_model_path, tmp_path, capsys, no_loading
):
    (tmp_path / "m.onnx.data").mkdir()
    out = tmp_path / "m.onnx"
    _refused(
        capsys,
        ["ir", "convert", str(small_model_path), str(out), "--external-data"],
        "OUT's weights",
    )
    assert not out.exists()


def _passes_run(model: Path, output: Path | str, audit: Path | str, *extra: str) -> list[str]:
    return [
        "passes",
        "run",
        str(model),
        "--pipeline",
        "cleanup",
        "--no-numeric",
        "-o",
        str(output),
        "--audit",
        str(audit),
        *extra,
    ]


def test_passes_run_output_onto_a_folder_fails_before_loading(
    small_model_path, tmp_path, capsys, no_loading
):
    folder = tmp_path / "adir"
    folder.mkdir()
    argv = _passes_run(small_model_path, folder, tmp_path / "a.jsonl")
    _refused(capsys, argv, f"-o {folder}: is a folder, expected a file path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "small"]


def test_passes_run_unwritable_audit_writes_no_model(small_model_path, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    argv = _passes_run(small_model_path, out, "/proc/a.jsonl")
    _refused(capsys, argv, "--audit /proc/a.jsonl: cannot write in /proc")
    assert not out.exists()


def test_passes_run_dump_ir_onto_an_existing_file_fails_before_loading(
    small_model_path, tmp_path, capsys, no_loading
):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    argv = _passes_run(small_model_path, tmp_path / "x.onnx", tmp_path / "a.jsonl")
    _refused(capsys, [*argv, "--dump-ir", str(notes)], f"--dump-ir {notes}: is a file")
    assert notes.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "small"]


def test_passes_run_model_and_audit_on_one_path_is_refused(
    small_model_path, tmp_path, capsys, no_loading
):
    same = tmp_path / "x.onnx"
    _refused(capsys, _passes_run(small_model_path, same, same), "-o and --audit are the same")
    assert not same.exists()


def test_report_html_into_proc_fails_before_reading_results(tmp_path, capsys, monkeypatch):
    result = write(tmp_path, "ort", model_document())

    def forbidden(path: object) -> None:
        raise AssertionError("a result was read before the output was checked")

    monkeypatch.setattr(report_commands, "read_result", forbidden)
    _refused(
        capsys,
        ["report", "html", str(result), "-o", "/proc/x.html"],
        "-o /proc/x.html: cannot write in /proc",
    )


def test_report_html_onto_a_folder_is_refused(tmp_path, capsys):
    result = write(tmp_path, "ort", model_document())
    folder = tmp_path / "page"
    folder.mkdir()
    _refused(
        capsys,
        ["report", "html", str(result), "-o", str(folder)],
        f"-o {folder}: is a folder, expected a file path",
    )
    assert list(folder.iterdir()) == []
