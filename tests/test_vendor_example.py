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
import onnx_ir as oir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir.errors import AsicperfError
from ir.model_io import load_model
from passes.audit import read_audit
from passes.pipeline import parse_pipeline
from runner.cli import main
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
    "Gelu",
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


def _save(tmp_path: Path, nodes, inputs, outputs, weights, opset: int = 17) -> oir.Model:
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in weights.items()]
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return load_model(path)


def _float(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _mlp(tmp_path: Path) -> oir.Model:
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


def _cnn(tmp_path: Path) -> oir.Model:
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


def _chain(tmp_path: Path, op: str, **attributes: object) -> oir.Model:
    """x[2,3] -> Relu (n0) -> `op` (n1) -> y."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node(op, ["r"], ["y"], **attributes),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("x", "y")]
    return _save(tmp_path, nodes, io[:1], io[1:], {})


def _reference(model: oir.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
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


def _decomposed_gelu(tmp_path: Path, form: str) -> oir.Model:
    """x[2,8] -> GELU as exporters write it at opset 14 -> y: Div, Erf, Add, Mul, Mul (erf) or
    Pow, Mul, Add, Mul, Tanh, Add, Mul, Mul (tanh); Div, Erf and Pow are not in the op list."""
    if form == "erf":
        nodes = [
            helper.make_node("Div", ["x", "root2"], ["s"]),
            helper.make_node("Erf", ["s"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["a"]),
            helper.make_node("Mul", ["x", "a"], ["m"]),
            helper.make_node("Mul", ["m", "half"], ["y"]),
        ]
    else:
        nodes = [
            helper.make_node("Pow", ["x", "three"], ["p"]),
            helper.make_node("Mul", ["p", "cubic"], ["c"]),
            helper.make_node("Add", ["x", "c"], ["i"]),
            helper.make_node("Mul", ["i", "k"], ["s"]),
            helper.make_node("Tanh", ["s"], ["t"]),
            helper.make_node("Add", ["t", "one"], ["a"]),
            helper.make_node("Mul", ["half", "x"], ["h"]),
            helper.make_node("Mul", ["h", "a"], ["y"]),
        ]
    constants = {
        "root2": np.sqrt(2.0),
        "one": 1.0,
        "half": 0.5,
        "three": 3.0,
        "cubic": 0.044715,
        "k": np.sqrt(2.0 / np.pi),
    }
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 8]) for n in ("x", "y")]
    weights = {name: np.array(value, np.float32) for name, value in constants.items()}
    return _save(tmp_path, nodes, io[:1], io[1:], weights, opset=14)


@pytest.mark.parametrize(("form", "approximate"), [("erf", "none"), ("tanh", "tanh")])
def test_recognize_gelu_emits_the_declared_gelu(installed, tmp_path, form, approximate):
    """The target declares FusedOp("Gelu") in its capabilities, and recognize-gelu, asked for
    it by name, fuses a GELU into one Gelu below opset 20, where ONNX has none; nothing in the
    core knows the target. The model it could run only in part it now runs whole."""
    model = _decomposed_gelu(tmp_path, form)
    feeds = {"x": 3 * _float(2, 8, seed=2)}
    (want,) = _reference(model, feeds)
    target = get_target("example-numpy")
    assert compile_model(target, model).plan.node_coverage < 1
    (gelu,) = parse_pipeline("recognize-gelu{target=example-numpy}")
    result = gelu(model)
    assert result.skipped == ()
    assert [(node.domain, node.op_type) for node in model.graph] == [("", "Gelu")]
    assert model.graph.node(0).attributes.get_string("approximate") == approximate
    assert model.opset_imports == {"": 14}
    compiled = target.compile(model, target.config_type())
    (got,) = target.load(compiled, batch_size=2).run(feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _passes_run(tmp_path: Path, *options: str) -> tuple[int, Path, Path]:
    """`runner passes run` on the model `_save` wrote: (exit status, output, audit)."""
    output, audit = tmp_path / "out.onnx", tmp_path / "audit.jsonl"
    model = str(tmp_path / "model.onnx")
    args = ["passes", "run", model, "-o", str(output), "--audit", str(audit), *options]
    return main(args), output, audit


def test_passes_run_checks_the_received_gelu_on_the_target(installed, tmp_path, capsys):
    """The reference path has no Gelu at opset 14, so the numeric check runs the pass's output
    on the target it was emitted for, and says so."""
    _decomposed_gelu(tmp_path, "erf")
    options = ("--target", "example-numpy", "--pipeline", "recognize-gelu")
    status, output, audit = _passes_run(tmp_path, *options)
    assert status == 0 and output.exists()
    (record,) = read_audit(audit)
    where = "checked on target 'example-numpy': the reference path has no Gelu at opset 14"
    assert record.numeric["where"] == where
    (drift,) = record.numeric["vs_input"]
    assert drift["max_abs"] < 1e-6 and drift["cosine"] > 1 - 1e-9
    assert f"numeric check of #1 recognize-gelu: {where}" in capsys.readouterr().out


def test_passes_run_without_a_target_records_the_gelu_as_not_checked(installed, tmp_path):
    """The pass is told to emit for the target, the run names none: nothing checks the Gelu,
    and the record says why rather than the run failing."""
    _decomposed_gelu(tmp_path, "erf")
    status, output, audit = _passes_run(
        tmp_path, "--pipeline", "recognize-gelu{target=example-numpy}"
    )
    assert status == 0 and output.exists()
    (record,) = read_audit(audit)
    assert record.numeric == {
        "seed": 0,
        "where": "not checked: the reference path has no Gelu at opset 14, and no target is "
        "given to run it on",
    }


def test_a_drift_bound_refuses_an_output_nothing_can_check(installed, tmp_path, capsys):
    _decomposed_gelu(tmp_path, "erf")
    pipeline = "recognize-gelu{target=example-numpy},sparsify"
    status, output, audit = _passes_run(
        tmp_path, "--pipeline", pipeline, "--max-drift", "cosine=0.99"
    )
    assert status == 2
    assert capsys.readouterr().err == (
        "runner: error: cannot measure the drift of the pipeline's output: the reference path "
        "has no Gelu at opset 14, and no target is given to run it on\n"
    )
    assert not output.exists() and not audit.exists()


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
        pytest.param("Gelu", {"x": 3 * _float(3, 4)}, {}, 20, id="gelu-erf"),
        pytest.param("Gelu", {"x": 3 * _float(3, 4)}, {"approximate": "tanh"}, 20, id="gelu-tanh"),
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
