"""The checks every command makes before its work: outputs it can write, dims the model has,
and memory it can have."""

from __future__ import annotations

from pathlib import Path

import pytest

from ir.bindings import MAX_DIM, check_bindings, check_dim_size, symbolic_dims
from ir.errors import AsicperfError
from ir.files import OutputError, check_output_dir, check_output_file
from ir.memory import available_bytes, check_fits_in_memory, minimum_bytes
from tests.onnx_text import load_onnx_text

_BATCHED_RELU = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, 1024] x) => (float[batch, 1024] y) {
    y = Relu(x)
}
"""


def test_output_file_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"--out .*: is a folder, expected a file path"):
        check_output_file(tmp_path, "--out")


def test_output_under_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"notes.txt is a file, not a folder"):
        check_output_file(blocker / "sub" / "m.onnx", "-o")
    with pytest.raises(OutputError, match=r"is a file, expected a folder"):
        check_output_dir(blocker, "--out")


def test_output_in_proc_is_refused() -> None:
    with pytest.raises(OutputError, match=r"report.html: cannot write in /proc"):
        check_output_file("/proc/report.html", "-o")


def test_output_check_leaves_nothing_behind(tmp_path: Path) -> None:
    check_output_file(tmp_path / "a" / "b" / "m.onnx", "-o")
    check_output_dir(tmp_path / "results", "--out")
    assert list(tmp_path.iterdir()) == []


def test_binding_a_dim_the_model_lacks_is_refused(tmp_path: Path) -> None:
    model = load_onnx_text(tmp_path, _BATCHED_RELU)
    assert symbolic_dims(model) == {"batch"}
    check_bindings(model, {"batch": 8}, "--dim")
    with pytest.raises(AsicperfError, match=r"--dim foo=4: the model has no dim 'foo' \(batch\)"):
        check_bindings(model, {"foo": 4}, "--dim")


@pytest.mark.parametrize("size", [-1, MAX_DIM + 1, 99999999999999999999])
def test_dim_size_out_of_range_is_refused(size: int) -> None:
    with pytest.raises(AsicperfError, match=rf"--dim n: {size} is out of range \(expected 0 to"):
        check_dim_size(size, "--dim n")


@pytest.mark.parametrize("size", [0, 1, MAX_DIM])
def test_dim_sizes_from_empty_to_the_largest_are_usable(size: int) -> None:
    assert check_dim_size(size, "--dim past_sequence_length") == size


def test_memory_estimate_counts_inputs_outputs_and_largest_value(tmp_path: Path) -> None:
    model = load_onnx_text(tmp_path, _BATCHED_RELU.replace("batch", "4"))
    # input and output 4 x 1024 float32, the largest intermediate is the output itself
    assert minimum_bytes(model) == 3 * 4 * 1024 * 4


def test_run_larger_than_memory_is_refused(tmp_path: Path) -> None:
    model = load_onnx_text(tmp_path, _BATCHED_RELU.replace("batch", "1000000000"))
    with pytest.raises(AsicperfError, match=r"x: needs at least 11,444.1 GiB .* 8.0 GiB available"):
        check_fits_in_memory(model, "x", available=8 * 2**30)


def test_available_memory_is_read_from_meminfo() -> None:
    assert available_bytes("MemTotal: 100 kB\nMemAvailable:   2048 kB\n") == 2048 * 1024
    assert available_bytes("MemTotal: 100 kB\n") is None


def test_memory_estimate_sizes_symbolic_dims_from_bindings(tmp_path: Path) -> None:
    """The bench estimates each batch size on the model as loaded once, unbound."""
    model = load_onnx_text(tmp_path, _BATCHED_RELU)
    assert minimum_bytes(model) == 0  # nothing static to count
    assert minimum_bytes(model, {"batch": 4}) == 3 * 4 * 1024 * 4
    with pytest.raises(AsicperfError, match=r"needs at least 11,444.1 GiB"):
        check_fits_in_memory(model, "x", available=8 * 2**30, bindings={"batch": 1000000000})
