"""The vendor example in docs/examples: installed the way a vendor's package is (pip, entry
point) and held to the reference target; its kernels checked op by op against onnxruntime."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.errors import AsicperfError
from ir.model_io import load_model
from targets.executable import compile_model
from targets.reference_target import ReferenceTarget
from targets.registry import get_target

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "docs" / "examples" / "asicperf-example-target"
DISTRIBUTION = "asicperf-example-target"
OPS = [
    "Add",
    "Conv",
    "Flatten",
    "Gemm",
    "Identity",
    "MatMul",
    "Mul",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Transpose",
]


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"pip {' '.join(args)} failed:\n{result.stderr}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The package pip-installed into this environment for the module's tests, then removed.

    Built from a copy, so the build leaves nothing behind in the repository; in pip's isolated
    build environment, since setuptools before 70.1 cannot build a wheel without the `wheel`
    package, which the test environment need not have.
    """
    copy = tmp_path_factory.mktemp("vendor") / PACKAGE.name
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    _pip("install", "--no-deps", "-q", str(copy))
    importlib.invalidate_caches()
    yield
    _pip("uninstall", "-y", "-q", DISTRIBUTION)
    importlib.invalidate_caches()


def _from_source(monkeypatch: pytest.MonkeyPatch, module: str) -> ModuleType:
    """A module of the package imported from its source folder: no install needed."""
    monkeypatch.syspath_prepend(str(PACKAGE / "src"))
    return importlib.import_module(f"asicperf_example_target.{module}")


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _from_source(monkeypatch, "target")


@pytest.fixture
def kernels(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _from_source(monkeypatch, "kernels")


def _save(tmp_path: Path, nodes, inputs, outputs, weights, opset: int = 17) -> ir.Model:
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in weights.items()]
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return load_model(path)


def _float(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _mlp(tmp_path: Path) -> ir.Model:
    """x[2,8] -> MatMul -> Add -> Relu -> Gemm(transB, alpha, beta) -> Softmax -> y[2,4]."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["g"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["g"], ["y"], axis=-1),
    ]
    weights = {"w1": _float(8, 16), "b1": _float(16), "w2": _float(4, 16), "b2": _float(4)}
    return _save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        weights,
    )


def _cnn(tmp_path: Path) -> ir.Model:
    """x[2,3,8,8] -> Conv(stride 2, pad 1) -> Relu -> Flatten -> Gemm -> y[2,5]."""
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["y"]),
    ]
    weights = {"cw": _float(4, 3, 3, 3), "cb": _float(4), "gw": _float(64, 5), "gb": _float(5)}
    return _save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
        weights,
    )


def _chain(tmp_path: Path, op: str, **attributes: object) -> ir.Model:
    """x[2,3] -> Relu (n0) -> `op` (n1) -> y."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node(op, ["r"], ["y"], **attributes),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("x", "y")]
    return _save(tmp_path, nodes, io[:1], io[1:], {})


def _reference(model: ir.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    reference = ReferenceTarget()
    return reference.load(reference.compile(model, reference.config_type()), 2).run(feeds)


def test_installed_package_registers_the_target(installed):
    code = (
        "import json; from targets.registry import describe, discover; "
        "print(json.dumps({n: {**describe(e).to_json(), 'source': e.source} "
        "for n, e in discover().items()}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    entry = json.loads(done.stdout)["example-numpy"]
    assert entry["available"] is True
    assert entry["source"] == "asicperf_example_target.target:NumpyTarget"
    assert entry["device"] == "cpu (numpy interpreter)" and entry["hardware"] is None


@pytest.mark.parametrize("build", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_matches_the_reference_target(installed, tmp_path, build):
    model = build(tmp_path)
    target = get_target("example-numpy")
    capabilities = target.capabilities()
    assert capabilities.ops == {("", op) for op in OPS} and capabilities.dtypes == {"float32"}
    feeds = {"x": _float(*model.graph.inputs[0].shape, seed=1)}
    compiled = target.compile(model, target.config_type())
    (got,) = target.load(compiled, batch_size=2).run(feeds)
    (want,) = _reference(model, feeds)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    record = compiled.record.to_json()
    assert record["pass"] == "compile:example-numpy" and record["config"] == {"check_finite": False}
    assert record["nodes_before"] == record["nodes_after"] == len(list(model.graph))
    assert (
        record["out_fingerprint"]
        == target.compile(model, target.config_type()).record.out_fingerprint
    )


def test_an_op_outside_the_list_is_a_one_line_compile_error(installed, tmp_path):
    target = get_target("example-numpy")
    with pytest.raises(AsicperfError) as caught:
        target.compile(_chain(tmp_path, "Sqrt"), target.config_type())
    message = str(caught.value)
    assert "cannot run node n1 (Sqrt)" in message and "\n" not in message


def test_unsupported_nodes_fall_back_to_the_reference_path(installed, tmp_path):
    model = _chain(tmp_path, "Sqrt")
    executable = compile_model(get_target("example-numpy"), model)
    assert executable.plan.unsupported == {"n1": "Sqrt is not supported"}
    assert executable.plan.node_coverage == 0.5
    feeds = {"x": _float(2, 3)}
    np.testing.assert_allclose(
        executable.session().run(feeds)[0], _reference(model, feeds)[0], rtol=1e-5, atol=1e-6
    )


def test_grouped_conv_is_refused_at_compile(source, tmp_path):
    model = _save(
        tmp_path,
        [helper.make_node("Conv", ["x", "w"], ["y"], group=2)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])],
        {"w": _float(2, 2, 3, 3)},
    )
    with pytest.raises(AsicperfError, match=r"node n0 \(Conv\): group=2, it runs group=1 only"):
        source.NumpyTarget().compile(model, source.NumpyTargetConfig())


def test_check_finite_names_the_node(source, tmp_path):
    target = source.NumpyTarget()
    compiled = target.compile(_chain(tmp_path, "Tanh"), source.NumpyTargetConfig(check_finite=True))
    feeds = {"x": np.array([[1, np.inf, 0]] * 2, dtype=np.float32)}
    with pytest.raises(AsicperfError, match=r"node n0 \(Relu\) produced NaN or Inf in 'r'"):
        target.load(compiled, batch_size=2).run(feeds)


def _onnxruntime(op: str, inputs: dict[str, np.ndarray], attrs: dict, opset: int) -> np.ndarray:
    """`op` run alone by onnxruntime at `opset`."""
    graph = helper.make_graph(
        [helper.make_node(op, list(inputs), ["y"], **attrs)],
        op,
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for n, a in inputs.items()
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


@pytest.mark.parametrize(
    ("op", "inputs", "attrs", "opset"),
    [
        pytest.param("Add", {"a": _float(2, 3, 4), "b": _float(3, 1)}, {}, 17, id="add-bcast"),
        pytest.param("Mul", {"a": _float(4), "b": _float(2, 1, 4)}, {}, 17, id="mul-bcast"),
        pytest.param(
            "Gemm",
            {"a": _float(3, 5), "b": _float(4, 5), "c": _float(4)},
            {"transB": 1, "alpha": 0.5, "beta": -2.0},
            17,
            id="gemm-transB-alpha-beta",
        ),
        pytest.param(
            "Gemm",
            {"a": _float(5, 3), "b": _float(5, 4), "c": _float(3, 1)},
            {"transA": 1, "alpha": 1.5},
            17,
            id="gemm-transA-column-bias",
        ),
        pytest.param("Softmax", {"x": _float(2, 3, 4)}, {}, 17, id="softmax-default"),
        pytest.param("Softmax", {"x": _float(2, 3, 4)}, {"axis": 1}, 17, id="softmax-axis1"),
        pytest.param("Softmax", {"x": _float(2, 3, 4)}, {"axis": 1}, 11, id="softmax-opset11"),
        pytest.param("Sigmoid", {"x": 60 * _float(3, 4)}, {}, 17, id="sigmoid-large"),
        pytest.param("Flatten", {"x": _float(2, 3, 4, 5)}, {"axis": -2}, 17, id="flatten-neg"),
        pytest.param(
            "Reshape",
            {"x": _float(2, 3, 4), "shape": np.array([0, -1], dtype=np.int64)},
            {},
            17,
            id="reshape-zero-minus-one",
        ),
        pytest.param("Transpose", {"x": _float(2, 3, 4)}, {}, 17, id="transpose-default"),
        pytest.param(
            "Conv",
            {"x": _float(2, 3, 9, 7), "w": _float(4, 3, 3, 2), "b": _float(4)},
            {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]},
            17,
            id="conv-strides-pads-dilations",
        ),
        pytest.param(
            "Conv",
            {"x": _float(1, 2, 7, 8), "w": _float(3, 2, 3, 3)},
            {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
            17,
            id="conv-same-upper",
        ),
        pytest.param(
            "Conv",
            {"x": _float(1, 2, 7, 8), "w": _float(3, 2, 2, 2)},
            {"auto_pad": "SAME_LOWER"},
            17,
            id="conv-same-lower",
        ),
    ],
)
def test_kernel_matches_onnxruntime(kernels, op, inputs, attrs, opset):
    got = np.asarray(kernels.KERNELS[op](list(inputs.values()), attrs, opset))
    want = _onnxruntime(op, inputs, attrs, opset)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
