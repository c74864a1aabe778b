"""load_model -> save_model must not change what a model computes, nor its fingerprint.

Every model in ONNX's own test data (shipped in the onnx wheel) that ONNX Runtime can run goes
through our loader and saver; the original and the re-exported file run on the same inputs in
identically configured single-threaded CPU sessions and must give bit-identical outputs.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from ir.errors import ModelLoadError
from ir.fingerprint import fingerprint
from ir.model_io import load_model, save_model

TEST_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
SUITES = ("light", "real", "simple", "pytorch-converted", "pytorch-operator")

# ORT's names for tensor element types, for the light_* models that ship no inputs.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _model_params() -> list[object]:
    params: list[object] = []
    for suite in SUITES:
        for case in sorted((TEST_DATA / suite).glob("*/")):
            case_id = f"{suite}/{case.name}"
            if (case / "model.onnx").is_file():
                params.append(pytest.param(case / "model.onnx", id=case_id))
            else:
                reason = "no model.onnx: the 'real' cases only hold a download URL"
                params.append(pytest.param(case / "model.onnx", id=case_id, marks=_skip(reason)))
    for path in sorted((TEST_DATA / "light").glob("light_*.onnx")):
        params.append(pytest.param(path, id=f"light/{path.name}"))
    return params


def _skip(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.skip(reason=reason)


def _session(path: Path) -> ort.InferenceSession:
    """Same options for the original and the re-export: CPU, one thread, quiet."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _shipped_feeds(model_path: Path, session: ort.InferenceSession) -> list[dict[str, object]]:
    """The inputs of each test_data_set_* next to the model, matched by name, else by position."""
    inputs = [value.name for value in session.get_inputs()]
    feeds = []
    for data_set in sorted(model_path.parent.glob("test_data_set_*")):
        feed: dict[str, object] = {}
        files = sorted(data_set.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
        for position, file in enumerate(files):
            tensor = onnx.TensorProto()
            tensor.ParseFromString(file.read_bytes())
            name = tensor.name if tensor.name in inputs else inputs[position]
            feed[name] = numpy_helper.to_array(tensor)
        feeds.append(feed)
    return feeds


def _random_feed(model_path: Path, session: ort.InferenceSession) -> dict[str, object]:
    """Seeded random inputs from the graph's input types (symbolic dims become 1)."""
    rng = np.random.default_rng(zlib.crc32(model_path.name.encode()))
    feed: dict[str, object] = {}
    for value in session.get_inputs():
        dtype = _ORT_DTYPES.get(value.type)
        if dtype is None:
            pytest.skip(f"no random input generator for {value.name}: {value.type}")
        shape = [dim if isinstance(dim, int) and dim >= 0 else 1 for dim in value.shape]
        feed[value.name] = rng.standard_normal(shape).astype(dtype)
    return feed


def _assert_identical(expected: object, actual: object, where: str) -> None:
    """Exactly equal values, dtypes and shapes; NaNs equal NaNs; sequences element by element."""
    if isinstance(expected, list):
        assert isinstance(actual, list), where
        assert len(actual) == len(expected), where
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            _assert_identical(left, right, f"{where}[{index}]")
        return
    expected, actual = np.asarray(expected), np.asarray(actual)
    assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
    equal_nan = expected.dtype.kind in "fc"
    assert np.array_equal(actual, expected, equal_nan=equal_nan), f"{where}: values differ"


@pytest.mark.parametrize("model_path", _model_params())
def test_round_trip_is_exact(model_path: Path, tmp_path: Path) -> None:
    try:
        original = _session(model_path)
    except Exception as error:  # ORT rejects the original: nothing to compare against
        pytest.skip(f"onnxruntime cannot run the original: {str(error).splitlines()[0]}")
    feeds = _shipped_feeds(model_path, original) or [_random_feed(model_path, original)]

    exported = save_model(load_model(model_path), tmp_path / "exported.onnx")
    reloaded = load_model(exported)
    re_exported = _session(exported)

    for index, feed in enumerate(feeds):
        expected = original.run(None, feed)
        actual = re_exported.run(None, feed)
        assert len(actual) == len(expected)
        for output, left, right in zip(original.get_outputs(), expected, actual, strict=True):
            _assert_identical(left, right, f"feed {index}, output '{output.name}'")
    assert fingerprint(reloaded) == fingerprint(load_model(model_path))


def _external_values(model: oir.Model) -> list[str]:
    return [
        value.name
        for graph in model.graphs()
        for value in graph.initializers.values()
        if isinstance(value.const_value, oir.ExternalTensor)
    ]


def test_external_data_round_trip(small_model_path: Path, tmp_path: Path) -> None:
    exported = tmp_path / "out" / "model.onnx"
    save_model(load_model(small_model_path), exported, external_data=True)
    data_file = exported.with_name("model.onnx.data")
    assert data_file.is_file()
    assert data_file.stat().st_size > 0

    reloaded = load_model(exported)
    assert sorted(_external_values(reloaded)) == ["conv_w", "gemm_w"]
    feed = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8), dtype=np.float32)}
    expected = _session(small_model_path).run(None, feed)
    actual = _session(exported).run(None, feed)
    _assert_identical(expected, actual, "output 'y'")
    assert fingerprint(reloaded) == fingerprint(load_model(small_model_path))


def test_external_data_model_saved_embedded_elsewhere(
    small_model_path: Path, tmp_path: Path
) -> None:
    """Saving an external-data model without external data must embed the weights, not point
    at a data file relative to the folder it came from."""
    external = save_model(
        load_model(small_model_path), tmp_path / "a" / "m.onnx", external_data=True
    )
    embedded = save_model(load_model(external), tmp_path / "b" / "m.onnx", external_data=False)
    assert not embedded.with_name("m.onnx.data").exists()
    reloaded = load_model(embedded)
    assert _external_values(reloaded) == []
    assert fingerprint(reloaded) == fingerprint(load_model(small_model_path))


def test_resaving_over_own_external_data_keeps_model_valid(
    small_model_path: Path, tmp_path: Path
) -> None:
    """Overwriting the data file a loaded model still reads from must not corrupt that model.

    A bigger Conv kernel moves `gemm_w` to a later offset in the new data file; the loaded
    model's untouched `gemm_w` must still hold its own values afterwards.
    """
    path = save_model(load_model(small_model_path), tmp_path / "m.onnx", external_data=True)
    gemm_w = load_model(path).graph.initializers["gemm_w"].const_value.numpy().copy()
    model = load_model(path)
    conv = model.graph.node(0)
    conv.attributes["pads"] = oir.AttrInt64s("pads", [2, 2, 2, 2])
    bigger_kernel = np.random.default_rng(2).standard_normal((8, 3, 5, 5), dtype=np.float32)
    conv_w = model.graph.initializers["conv_w"]
    conv_w.const_value = oir.tensor(bigger_kernel, name="conv_w")
    conv_w.shape = oir.Shape(bigger_kernel.shape)
    save_model(model, path, external_data=True)
    assert np.array_equal(model.graph.initializers["gemm_w"].const_value.numpy(), gemm_w)
    assert fingerprint(load_model(path)) == fingerprint(model)


def test_missing_external_data_file_is_a_load_error(small_model_path: Path, tmp_path: Path) -> None:
    exported = save_model(load_model(small_model_path), tmp_path / "model.onnx", external_data=True)
    exported.with_name("model.onnx.data").unlink()
    with pytest.raises(ModelLoadError) as caught:
        load_model(exported)
    message = str(caught.value)
    assert "\n" not in message
    assert str(exported) in message
    assert "model.onnx.data" in message
