"""Every way a file can fail to be a usable model is one ModelLoadError line naming the file.

The fuzz tests feed random and mutated bytes to the loader: it must either load a model or raise
ModelLoadError, never another exception (and never crash the interpreter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import ir.shape_inference
from ir.errors import ModelLoadError
from ir.model_io import load_model

TEST_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
_REAL_WORKER_SOURCE = ir.shape_inference._WORKER_SOURCE
FUZZ_SEEDS = {
    "conv": TEST_DATA / "pytorch-converted" / "test_Conv2d" / "model.onnx",
    "sequence": TEST_DATA / "simple" / "test_sequence_model1" / "model.onnx",
    "expand": TEST_DATA / "simple" / "test_expand_shape_model1" / "model.onnx",
}


def _load_error(path: Path) -> str:
    """The ModelLoadError message for `path`, checked to be one line that names the file."""
    with pytest.raises(ModelLoadError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "\n" not in message and message == message.strip()
    assert str(path) in message
    return message


def _one_node_model(node: onnx.NodeProto, opsets: dict[str, int]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "one_node",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    imports = [helper.make_opsetid(domain, version) for domain, version in opsets.items()]
    return helper.make_model(graph, opset_imports=imports, ir_version=8)


def _saved(tmp_path: Path, proto: onnx.ModelProto, name: str = "model.onnx") -> Path:
    path = tmp_path / name
    onnx.save(proto, path)
    return path


def test_missing_path(tmp_path: Path) -> None:
    assert "no such file" in _load_error(tmp_path / "missing.onnx")


def test_directory(tmp_path: Path) -> None:
    assert "directory" in _load_error(tmp_path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("This is not an ONNX model.\nIt is a text file.\n")
    assert "not an ONNX model" in _load_error(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert "not an ONNX model" in _load_error(path)


def test_truncated_model(tmp_path: Path) -> None:
    data = FUZZ_SEEDS["conv"].read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    _load_error(path)


def test_protobuf_that_is_not_a_model(tmp_path: Path) -> None:
    tensor = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "weights")
    path = tmp_path / "tensor.onnx"
    path.write_bytes(tensor.SerializeToString())
    _load_error(path)


def test_unknown_domain(tmp_path: Path) -> None:
    node = helper.make_node("Frobnicate", ["x"], ["y"], name="acme_node", domain="com.acme")
    message = _load_error(_saved(tmp_path, _one_node_model(node, {"": 17, "com.acme": 1})))
    assert "'acme_node'" in message and "Frobnicate" in message and "com.acme" in message


def test_unknown_default_domain_op(tmp_path: Path) -> None:
    node = helper.make_node("FooBar", ["x"], ["y"], name="foo_node")
    message = _load_error(_saved(tmp_path, _one_node_model(node, {"": 17})))
    assert "'foo_node'" in message and "FooBar" in message


def test_node_breaking_its_schema(tmp_path: Path) -> None:
    """An empty name for a required input: ONNX shape inference would segfault on it."""
    node = helper.make_node("EyeLike", [""], ["y"], name="eye")
    message = _load_error(_saved(tmp_path, _one_node_model(node, {"": 17})))
    assert "'eye'" in message and "EyeLike" in message


def test_schema_check_accepts_long_default_domain_spelling(tmp_path: Path) -> None:
    """ONNX Runtime runs a node whose domain is spelled "ai.onnx"; so must the loader load it."""
    node = helper.make_node("Relu", ["x"], ["y"], name="relu", domain="ai.onnx")
    model = load_model(_saved(tmp_path, _one_node_model(node, {"": 17})))
    assert model.graph.node(0).op_type == "Relu"
    assert model.graph.outputs[0].shape == [2, 3]


def test_non_utf8_op_type(tmp_path: Path) -> None:
    data = _one_node_model(helper.make_node("Relu", ["x"], ["y"]), {"": 17}).SerializeToString()
    path = tmp_path / "bad_text.onnx"
    path.write_bytes(data.replace(b"Relu", b"R\xffl\xfe"))
    assert "UTF-8" in _load_error(path)


def test_external_data_outside_model_folder(small_model_path: Path, tmp_path: Path) -> None:
    proto = onnx.load(small_model_path)
    weight = proto.graph.initializer[0]
    (tmp_path / "secret.bin").write_bytes(weight.raw_data)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    message = _load_error(_saved(small_model_path.parent, proto, "escaping.onnx"))
    assert "outside the model's folder" in message


def test_shape_inference_crash_is_contained(tmp_path: Path) -> None:
    """A LayerNormalization axis of 2**31 segfaults onnx 1.23's shape inference in C++.

    The loader must survive it; whichever way a fixed onnx handles it, the outcome is a loaded
    model or a ModelLoadError, and the next load works.
    """
    node = helper.make_node(
        "LayerNormalization",
        ["x", "scale"],
        ["y", "mean", "inv_std"],
        name="norm",
        axis=2**31,
        stash_type=7,
    )
    graph = helper.make_graph(
        [node],
        "layer_norm",
        [
            helper.make_tensor_value_info("x", TensorProto.BOOL, [0, 2]),
            helper.make_tensor_value_info("scale", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in node.output],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = _saved(tmp_path, proto)
    try:
        load_model(path)
    except ModelLoadError as error:
        assert "\n" not in str(error) and str(path) in str(error)
    assert load_model(FUZZ_SEEDS["conv"]).graph.node(0).op_type == "Conv"


@pytest.fixture
def worker_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Swap the shape inference worker's program; the real worker is back for the next test."""

    def use(source: str) -> None:
        ir.shape_inference._SHAPE_INFERENCE.stop()
        monkeypatch.setattr(ir.shape_inference, "_WORKER_SOURCE", source)

    yield use
    monkeypatch.undo()
    ir.shape_inference._SHAPE_INFERENCE.stop()


def test_worker_crash_is_a_load_error(
    small_model_path: Path, worker_source: Callable[[str], None]
) -> None:
    """A shape inference process killed by SIGSEGV is reported, and replaced for the next load."""
    worker_source(
        "import os, signal, sys; sys.stdout.buffer.write(b'R'); sys.stdout.flush(); "
        "sys.stdin.buffer.read(8); os.kill(os.getpid(), signal.SIGSEGV)"
    )
    message = _load_error(small_model_path)
    assert "crashed" in message and "SIGSEGV" in message
    worker_source(_REAL_WORKER_SOURCE)
    model = load_model(small_model_path)
    assert model.graph.node(0).outputs[0].shape == [1, 8, 8, 8]


def test_no_worker_falls_back_to_inference_here(
    small_model_path: Path, worker_source: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    worker_source("import sys; sys.exit(3)")
    model = load_model(small_model_path)
    assert model.graph.node(0).outputs[0].shape == [1, 8, 8, 8]
    assert "unprotected" in caplog.text


def _load_or_error(path: Path) -> None:
    """The fuzz oracle: a model, or a one-line ModelLoadError; anything else propagates."""
    try:
        load_model(path)
    except ModelLoadError as error:
        assert "\n" not in str(error)
        assert str(path) in str(error)


_FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ_SETTINGS
@given(data=st.binary(max_size=4096))
def test_fuzz_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.onnx"
    path.write_bytes(data)
    _load_or_error(path)


# Mostly in-place flips: they keep the protobuf framing intact more often than the others, so
# more mutants get past the parser into the model checks and shape inference.
_MUTATION = st.tuples(
    st.sampled_from(["flip"] * 7 + ["insert", "delete", "truncate"]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    st.binary(min_size=1, max_size=8),
)


def _mutated(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    buffer = bytearray(data)
    for kind, where, payload in mutations:
        position = min(int(where * len(buffer)), max(len(buffer) - 1, 0))
        if kind == "flip" and buffer:
            buffer[position] ^= payload[0] or 0xFF
        elif kind == "truncate":
            del buffer[position:]
        elif kind == "insert":
            buffer[position:position] = payload
        elif kind == "delete":
            del buffer[position : position + len(payload)]
    return bytes(buffer)


@_FUZZ_SETTINGS
@given(
    seed=st.sampled_from(sorted(FUZZ_SEEDS)),
    mutations=st.lists(_MUTATION, min_size=1, max_size=4),
)
def test_fuzz_mutated_models(
    tmp_path: Path, seed: str, mutations: list[tuple[str, float, bytes]]
) -> None:
    path = tmp_path / "mutated.onnx"
    path.write_bytes(_mutated(FUZZ_SEEDS[seed].read_bytes(), mutations))
    _load_or_error(path)


_SCHEMAS = sorted(
    (
        schema
        for schema in onnx.defs.get_all_schemas_with_history()
        if schema.domain in ("", "ai.onnx.ml") and not schema.deprecated
    ),
    key=lambda schema: (schema.domain, schema.name, schema.since_version),
)
_ELEMENT_TYPES = [
    TensorProto.FLOAT,
    TensorProto.DOUBLE,
    TensorProto.FLOAT16,
    TensorProto.INT64,
    TensorProto.INT32,
    TensorProto.UINT8,
    TensorProto.BOOL,
    TensorProto.STRING,
]
_ATTR = onnx.defs.OpSchema.AttrType
_INTS = st.integers(-(2**63), 2**63 - 1) | st.integers(-4, 8)
_FLOATS = st.floats(width=32)
_STRINGS = st.binary(max_size=12) | st.sampled_from([b"NOTSET", b"SAME_UPPER", b"constant"])
_ATTRIBUTE_VALUES = {
    _ATTR.INT: (_INTS, onnx.AttributeProto.INT),
    _ATTR.FLOAT: (_FLOATS, onnx.AttributeProto.FLOAT),
    _ATTR.STRING: (_STRINGS, onnx.AttributeProto.STRING),
    _ATTR.INTS: (st.lists(_INTS, max_size=6), onnx.AttributeProto.INTS),
    _ATTR.FLOATS: (st.lists(_FLOATS, max_size=4), onnx.AttributeProto.FLOATS),
    _ATTR.STRINGS: (st.lists(_STRINGS, max_size=3), onnx.AttributeProto.STRINGS),
}


@st.composite
def _single_node_models(draw: st.DrawFn) -> onnx.ModelProto:
    """One ONNX-defined op with arbitrary arity, input types and attribute values.

    Out-of-range attribute values are what crashes ONNX's C++ shape inference; this is the fuzz
    that found the LayerNormalization axis segfault.
    """
    schema = draw(st.sampled_from(_SCHEMAS))
    inputs = []
    for index in range(draw(st.integers(0, len(schema.inputs) + 2))):
        rank = draw(st.none() | st.integers(0, 4))
        dims = (
            None
            if rank is None
            else draw(st.lists(st.sampled_from([0, 1, 2, 3, "N"]), min_size=rank, max_size=rank))
        )
        element = draw(st.sampled_from(_ELEMENT_TYPES))
        inputs.append(helper.make_tensor_value_info(f"i{index}", element, dims))
    names = [draw(st.sampled_from([value.name, value.name, ""])) for value in inputs]
    outputs = [f"o{index}" for index in range(draw(st.integers(1, len(schema.outputs) + 1)))]
    node = helper.make_node(schema.name, names, outputs, domain=schema.domain)
    for attribute in schema.attributes.values():
        if attribute.type in _ATTRIBUTE_VALUES and draw(st.booleans()):
            values, kind = _ATTRIBUTE_VALUES[attribute.type]
            node.attribute.append(
                helper.make_attribute(attribute.name, draw(values), attr_type=kind)
            )
    graph = helper.make_graph(
        [node],
        "fuzzed",
        inputs,
        [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None) for name in outputs],
    )
    imports = [helper.make_opsetid(schema.domain, schema.since_version)]
    if schema.domain:
        imports.append(helper.make_opsetid("", 21))
    return helper.make_model(graph, opset_imports=imports, ir_version=10)


@_FUZZ_SETTINGS
@given(proto=_single_node_models())
def test_fuzz_single_node_models(tmp_path: Path, proto: onnx.ModelProto) -> None:
    path = tmp_path / "node.onnx"
    path.write_bytes(proto.SerializeToString())
    _load_or_error(path)


@pytest.mark.parametrize("raw", [True, False], ids=["raw-data", "typed-data"])
def test_initializer_with_fewer_values_than_its_dims(tmp_path: Path, raw: bool) -> None:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 30])
    if raw:
        weight.raw_data = np.ones(2, np.float32).tobytes()
    else:
        weight.float_data.extend([1.0, 2.0])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 30])],
        [weight],
    )
    path = _saved(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    unit = "8 bytes (expected 120)" if raw else "2 values (expected 30)"
    assert _load_error(path).endswith(
        f"initializer 'w' has dims [1, 30] (30 elements) but holds {unit}"
    )


def test_initializer_with_an_unknown_data_type(tmp_path: Path) -> None:
    weight = TensorProto(name="w", data_type=0, dims=[2], raw_data=b"\x00" * 8)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [weight],
    )
    path = _saved(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert _load_error(path).endswith("initializer 'w' has unknown data type 0")
