"""`runner run`: bad outputs, numbers, target specs and input files are one-line errors before
any work; a wait on a target shows a spinner on a terminal only."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from bench_models import save_matmul
from onnx import TensorProto, helper
from small_decoders import small_decoder

from runner import run_command
from runner.cli import main
from runner.spinner import spinner


def _matmul(tmp_path: Path) -> Path:
    """x[2,4] @ w[4,3] -> y[2,3]."""
    return save_matmul(
        tmp_path / "matmul.onnx", 2, np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    )


@pytest.fixture
def no_target_runs(monkeypatch):
    """Fail the test if a target job starts: the errors must come before any work."""

    def refuse(*args, **kwargs):
        raise AssertionError("a target ran")

    monkeypatch.setattr(run_command, "run_isolated", refuse)


def _error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip().removeprefix("runner: error: ")


@pytest.mark.parametrize("where", ["file", "/proc/x"])
def test_run_output_dir_unwritable_fails_before_running(tmp_path, capsys, no_target_runs, where):
    output_dir = tmp_path / "file" if where == "file" else Path(where)
    if where == "file":
        output_dir.write_text("not a folder")
    args = ["run", str(_matmul(tmp_path)), "--target", "reference"]
    message = _error(capsys, [*args, "--output-dir", str(output_dir)])
    assert message.startswith(f"--output-dir {output_dir}: ")
    assert ("is a file, expected a folder" in message) == (where == "file")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--timeout", "-1", "--timeout -1: expected a number of seconds > 0"),
        ("--timeout", "0", "--timeout 0: expected a number of seconds > 0"),
        ("--timeout", "nan", "--timeout nan: expected a number of seconds > 0"),
        ("--seed", "-1", "--seed -1: expected an integer >= 0"),
    ],
)
def test_run_timeout_negative_is_refused(tmp_path, capsys, no_target_runs, option, value, message):
    args = ["run", str(_matmul(tmp_path)), "--target", "reference", option, value]
    assert _error(capsys, args) == message


def test_run_input_dims_2_pow_40_are_refused_before_allocating(tmp_path, capsys, monkeypatch):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2**40])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2**40])],
    )
    path = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    def refuse(*args, **kwargs):
        raise AssertionError("inputs were allocated")

    monkeypatch.setattr(run_command, "seeded_inputs", refuse)
    message = _error(capsys, ["run", str(path), "--target", "reference"])
    # x and y are 4 TiB each, and y is also the largest intermediate: 12 TiB at least.
    assert message.startswith(f"model {path}: needs at least 12,288.0 GiB (weights, inputs")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("onnxruntime{threads=2", "target 'onnxruntime{threads=2': missing '}' after the options"),
        (
            "onnxruntime{threads=2,optimization=basic}",
            "target 'onnxruntime{threads=2,optimization=basic}': options are separated by "
            "spaces, not commas: onnxruntime{threads=2 optimization=basic}",
        ),
        (
            "onnxruntime{threads=-1}",
            "target 'onnxruntime': threads=-1 is outside threads >= 0 "
            "(0: onnxruntime's default, one per physical core)",
        ),
    ],
)
def test_target_missing_brace_names_the_target(tmp_path, capsys, no_target_runs, target, message):
    assert _error(capsys, ["run", str(_matmul(tmp_path)), "--target", target]) == message


def test_bench_target_missing_brace_names_the_target(tmp_path, capsys):
    args = ["bench", "--model", str(_matmul(tmp_path)), "--target", "onnxruntime{threads=2"]
    args += ["--out", str(tmp_path / "bench")]
    assert _error(capsys, args) == ("target 'onnxruntime{threads=2': missing '}' after the options")
    assert not (tmp_path / "bench").exists()


def _write_input_files(folder: Path) -> None:
    (folder / "text.npy").write_text("1 2 3 4\n")
    np.savez(folder / "arrays.npz", x=np.zeros((2, 4), np.float32))
    np.save(folder / "objects.npy", np.array([{}], dtype=object), allow_pickle=True)
    np.save(folder / "float64.npy", np.zeros((2, 4)))
    np.save(folder / "short.npy", np.zeros(3, np.float32))
    np.save(folder / "good.npy", np.zeros((2, 4), np.float32))
    (folder / "cut.npy").write_bytes((folder / "good.npy").read_bytes()[:100])
    (folder / "folder.npy").mkdir()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            ["x=text.npy"],
            "--input x=text.npy: not a .npy file (no numpy header; "
            "write one array per input with numpy.save)",
        ),
        (
            ["x=arrays.npz"],
            "--input x=arrays.npz: not a .npy file (a zip or .npz archive; "
            "write one array per input with numpy.save)",
        ),
        (["x=missing.npy"], "--input x=missing.npy: no such file"),
        (["x=folder.npy"], "--input x=folder.npy: is a folder, not a .npy file"),
        (
            ["x=objects.npy"],
            "--input x=objects.npy: holds Python objects (dtype object), not numbers",
        ),
        (["x=cut.npy"], "--input x=cut.npy: corrupt .npy file (EOF: reading array header"),
        (
            ["x=float64.npy"],
            "--input x=float64.npy: dtype float64, the model's input 'x' is float32",
        ),
        (["x=short.npy"], "--input x=short.npy: shape [3] does not match the model's [2, 4]"),
        (["q=good.npy"], "--input q=good.npy: the model has no input 'q' (inputs: x)"),
        (["x=good.npy", "x=good.npy"], "--input x=good.npy: input 'x' is already given"),
        (["good.npy"], "--input 'good.npy': expected NAME=FILE.npy"),
    ],
)
def test_run_input_text_file_is_not_a_npy_file(
    tmp_path, capsys, monkeypatch, no_target_runs, inputs, message
):
    model = _matmul(tmp_path)
    _write_input_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["run", str(model), "--target", "reference"]
    for pair in inputs:
        args += ["--input", pair]
    assert _error(capsys, args).startswith(message)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_spinner_shows_elapsed_time_on_a_terminal_only(monkeypatch):
    for stream, enabled, shown in (
        (_Terminal(), True, True),
        (_Terminal(), False, False),
        (io.StringIO(), True, False),
    ):
        monkeypatch.setattr("sys.stderr", stream)
        with spinner("compiling for tvm…", enabled=enabled):
            time.sleep(0.3)
        text = stream.getvalue()
        assert ("compiling for tvm…" in text and "0:00:00" in text) == shown, text
        assert shown or text == ""


def test_run_target_tvm_compiles_silently_no_more(tmp_path, capsys, monkeypatch):
    """The wait on the child process shows a spinner on a terminal; --json keeps stderr clean;
    outputs are written whole (no temp files left beside them)."""
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    out = tmp_path / "out"
    args = ["run", str(_matmul(tmp_path)), "--target", "reference", "--output-dir", str(out)]
    assert main(args) == 0
    assert "compiling and running on reference…" in terminal.getvalue()
    assert "output 0 y float32[2, 3]" in capsys.readouterr().out
    monkeypatch.setattr("sys.stderr", json_terminal := _Terminal())
    assert main([*args, "--json"]) == 0
    assert json_terminal.getvalue() == ""
    assert json.loads(capsys.readouterr().out)["runs"][0]["ok"]
    assert sorted(path.name for path in out.iterdir()) == ["output_0.npy"]


def _decoder(tmp_path: Path) -> Path:
    """A 2-layer Llama decoder (4 query heads, 2 KV heads of 8, vocabulary 64) on seeded weights,
    with the symbolic dims batch, sequence_length, past_sequence_length, total_sequence_length."""
    path = tmp_path / "decoder.onnx"
    onnx.save(small_decoder(), path)
    return path


PREFILL = ["batch=1", "sequence_length=3", "past_sequence_length=0", "total_sequence_length=3"]


def test_run_dims_size_the_seeded_inputs_of_a_decoder_prefill(tmp_path, capsys):
    """The bound lengths reach the seeded inputs: 3 new tokens and an empty cache give logits
    for 3 positions and a cache of 3 (unbound, every length is 1, and the mask of 1 token does
    not match the total of 1 cached + 1 new)."""
    args = ["run", str(_decoder(tmp_path)), "--target", "onnxruntime"]
    args += ["--output-dir", str(tmp_path / "out")]
    for binding in PREFILL:
        args += ["--dim", binding]
    assert main(args) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("output")]
    assert [line.rsplit(" -> ", 1)[0] for line in printed] == [
        "output 0 logits float32[1, 3, 64]",
        "output 1 present.0.key float32[1, 2, 3, 8]",
        "output 2 present.0.value float32[1, 2, 3, 8]",
        "output 3 present.1.key float32[1, 2, 3, 8]",
        "output 4 present.1.value float32[1, 2, 3, 8]",
    ]


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        (
            "seq=3",
            "--dim seq=3: the model has no dim 'seq' (batch, past_sequence_length, "
            "sequence_length, total_sequence_length)",
        ),
        ("batch", "--dim 'batch': expected NAME=SIZE (0 or more), e.g. batch=8"),
        ("batch=-1", "--dim 'batch=-1': expected NAME=SIZE (0 or more), e.g. batch=8"),
        (
            "batch=1099511627777",
            "--dim batch: 1099511627777 is out of range (expected 0 to 1099511627776)",
        ),
        ("sequence_length=2", "--dim sequence_length=2: 'sequence_length' is already given"),
    ],
)
def test_run_dim_bad_name_or_size_is_one_line_before_running(
    tmp_path, capsys, no_target_runs, binding, message
):
    args = ["run", str(_decoder(tmp_path)), "--target", "onnxruntime"]
    args += ["--dim", "sequence_length=3", "--dim", binding]
    assert _error(capsys, args) == message
