"""The `openvino` target: registration, options, the compile record (the precision OpenVINO
computed in and who chose it, its fused layers mapped to node ids, int8 kernels), agreement
with the reference target at f32, nodes OpenVINO cannot run falling back, the blob cache and
its one-line errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from bert_like import assert_close
from onnx import TensorProto, helper
from small_models import mlp, onnx_model, small_resnet

from ir.errors import AsicperfError
from ir.model_io import load_model
from ir.seeded_inputs import seeded_inputs
from passes.instruments import VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import PipelineError, make_config, parse_pipeline
from passes.target_binding import bind_pipeline
from targets.api import CompiledModel
from targets.executable import compile_model
from targets.precision_choice import precision_of
from targets.reference_target import ReferenceTarget
from targets.registry import discover, get_target

ov = pytest.importorskip("openvino", reason="openvino is not installed (asicperf[openvino])")

from targets.openvino_runtime import core, openvino_message  # noqa: E402
from targets.openvino_target import OpenVinoConfig, OpenVinoTarget  # noqa: E402

_BF16 = "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
_NEEDS_BF16 = pytest.mark.skipif(not _BF16, reason="this CPU has no bf16 support in OpenVINO")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test compiles into its own blob cache, never the user's."""
    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path / "cache"))


def _load(proto: onnx.ModelProto, tmp_path: Path, name: str = "model") -> oir.Model:
    path = tmp_path / f"{name}.onnx"
    onnx.save(proto, path)
    return load_model(path)


def _config(**options: str) -> OpenVinoConfig:
    config = make_config(OpenVinoTarget, options, kind="target")
    assert isinstance(config, OpenVinoConfig)
    return config


def _compile(model: oir.Model, **options: str) -> CompiledModel:
    return OpenVinoTarget().compile(model, _config(**options))


def _run(compiled: CompiledModel, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return OpenVinoTarget().load(compiled, 1).run(feeds)


def _reference(model: oir.Model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    target = ReferenceTarget()
    return target.load(target.compile(model, target.config_type()), 1).run(feeds)


def test_registered_through_the_entry_point_and_available() -> None:
    entry = discover()["openvino"]
    assert entry.source == "targets.openvino_target:OpenVinoTarget"
    info = get_target("openvino").info()
    assert info.available and info.version == ov.__version__.split("-")[0]
    assert info.device.startswith("cpu: ")


def test_unavailable_with_the_reason_when_openvino_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(module: str, distributions: object) -> str:
        raise ModuleNotFoundError(f"No module named '{module}'")

    monkeypatch.setattr("targets.installed.installed_version", missing)
    info = OpenVinoTarget().info()
    assert not info.available
    assert info.why_not == (
        "cannot import openvino: No module named 'openvino' (pip install 'asicperf[openvino]')"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "fp8"}, "precision"),
        ({"hint": "fast"}, "hint"),
        ({"threads": "-1"}, "threads=-1 is outside"),
        ({"streams": "-2"}, "streams=-2 is outside"),
        ({"device": "cpu"}, "device='cpu' is not an OpenVINO device name"),
        ({"cores": "2"}, "unknown option 'cores'"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict[str, str], message: str) -> None:
    with pytest.raises(PipelineError, match=message) as error:
        _config(**options)
    assert "\n" not in str(error.value)


def test_a_device_openvino_does_not_find_is_refused_naming_those_it_finds(
    tmp_path: Path,
) -> None:
    model = _load(mlp(), tmp_path)
    with pytest.raises(AsicperfError, match=r"device 'NPU' is not available here \(OpenVINO"):
        _compile(model, device="NPU")


def test_f32_matches_the_reference_and_records_the_users_choice(tmp_path: Path) -> None:
    model = _load(small_resnet(), tmp_path)
    feeds = seeded_inputs(model, 0)
    compiled = _compile(model, precision="f32")
    assert_close(_reference(model, feeds), _run(compiled, feeds))
    precision = precision_of(compiled.record.to_json())
    assert precision is not None
    assert (precision.model, precision.requested, precision.effective) == (
        "float32",
        "float32",
        "float32",
    )
    assert precision.chosen_by == "user" and precision.flag is None
    assert set(compiled.record.extra["layer_precisions"]) == {"f32"}


@_NEEDS_BF16
def test_bf16_asked_is_recorded_as_the_users_choice(tmp_path: Path) -> None:
    model = _load(small_resnet(), tmp_path)
    compiled = _compile(model, precision="bf16")
    precision = precision_of(compiled.record.to_json())
    assert precision is not None
    assert (precision.effective, precision.chosen_by, precision.flag) == ("bfloat16", "user", None)
    assert compiled.record.extra["inference_precision_hint"] == "bfloat16"


@_NEEDS_BF16
def test_the_bf16_default_is_flagged_as_the_vendors_choice_and_drifts(tmp_path: Path) -> None:
    """The default a buyer gets without asking: bf16 on this CPU, so outputs move well past
    float32 rounding (f32 stays within 1e-5 of the reference)."""
    model = _load(small_resnet(), tmp_path)
    feeds = seeded_inputs(model, 0)
    compiled = _compile(model)
    precision = precision_of(compiled.record.to_json())
    assert precision is not None
    assert precision.chosen_by == "target" and precision.requested == "default"
    assert precision.flag == "vendor default: bfloat16"
    drift = np.abs(_run(compiled, feeds)[0] - _reference(model, feeds)[0]).max()
    f32 = np.abs(_run(_compile(model, precision="f32"), feeds)[0] - _reference(model, feeds)[0])
    assert drift > 1e-4 > 1e-5 > f32.max()


@pytest.mark.skipif(_BF16, reason="this CPU has bf16: OpenVINO's default is bf16 here")
def test_without_bf16_the_default_keeps_the_models_type(tmp_path: Path) -> None:
    compiled = _compile(_load(small_resnet(), tmp_path))
    precision = precision_of(compiled.record.to_json())
    assert precision is not None and precision.chosen_by == "model"


def test_fused_layers_are_mapped_to_the_ir_nodes_they_run(tmp_path: Path) -> None:
    """The stem's Conv, BatchNormalization and Relu (n0, n1, n2) run as one Convolution layer:
    the record says so as a fusion replacing those three nodes."""
    model = _load(small_resnet(), tmp_path)
    record = _compile(model, precision="f32").record
    stem = [layer for layer in record.extra["layers"] if layer["nodes"][:1] == ["n0"]]
    assert [(layer["type"], layer["nodes"]) for layer in stem] == [
        ("Convolution", ["n0", "n1", "n2"])
    ]
    fusions = [c for c in record.changes if c.rule == "openvino-fusion"]
    assert fusions[0].replaces == ("n0", "n1", "n2")
    assert record.extra["streams"] >= 1 and record.extra["threads"] >= 1
    assert record.extra["execution_devices"] == ["CPU"]


def _with_det(batch: int = 2) -> onnx.ModelProto:
    """Relu -> Det -> Mul: OpenVINO's ONNX frontend has no Det."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Det", ["r"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["y"]),
    ]
    return onnx_model(nodes, {"x": (TensorProto.FLOAT, [batch, 3, 3])}, ["y"], {})


def test_a_node_openvino_cannot_convert_falls_back_and_the_rest_runs_on_it(
    tmp_path: Path,
) -> None:
    model = _load(_with_det(), tmp_path)
    target = get_target("openvino")
    executable = compile_model(target, model, _config(precision="f32"))
    plan = executable.plan
    assert [s.on_target for s in plan.segments] == [True, False, True]
    reasons = executable.record.extra["partition"]["unsupported"]
    assert reasons == {"n1": "OpenVINO's ONNX frontend has no conversion for it"}
    feeds = seeded_inputs(model, 0)
    assert_close(_reference(model, feeds), executable.session(2).run(feeds))


def test_the_int8_pipeline_runs_on_openvinos_int8_kernels(tmp_path: Path) -> None:
    model = _load(small_resnet(), tmp_path)
    spec = bind_pipeline("int8", "openvino")
    quantized = run_pipeline(model, parse_pipeline(spec), [VerifyAfterEachPass()]).model
    record = _compile(quantized, precision="f32").record
    int8 = record.extra["int8"]
    assert int8["int8_matrix_layers"] == int8["matrix_layers"] == 4  # 3 Conv, the Gemm
    assert int8["int8_by_type"] == {"Convolution": 3, "FullyConnected": 1}
    feeds = seeded_inputs(model, 0)
    drift = np.abs(_run(_compile(quantized), feeds)[0] - _reference(model, feeds)[0]).max()
    assert 0 < drift < 0.05


def test_a_second_compile_loads_the_blob_from_the_cache(tmp_path: Path) -> None:
    model = _load(mlp(), tmp_path)
    first, second = _compile(model), _compile(model)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.record.extra["cache_dir"] == str(tmp_path / "cache" / "openvino")
    assert not _compile(model, cache="false").cache_hit


def test_symbolic_batch_runs_at_two_batch_sizes(tmp_path: Path) -> None:
    model = _load(mlp(), tmp_path)
    compiled = _compile(model, precision="f32")
    for batch in (1, 5):
        feeds = seeded_inputs(model, 0, {"batch": batch})
        assert_close(_reference(model, feeds), _run(compiled, feeds))


def test_feeds_for_inputs_openvino_dropped_are_ignored(tmp_path: Path) -> None:
    """ReduceSum with an empty `axes` input: OpenVINO folds the input away."""
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)]
    inputs = {"x": (TensorProto.FLOAT, [2, 3]), "axes": (TensorProto.INT64, [0])}
    model = _load(onnx_model(nodes, inputs, ["y"], {}, opset=13), tmp_path)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = _run(_compile(model, precision="f32"), {"x": x, "axes": np.zeros(0, np.int64)})
    assert y.tolist() == [[15.0]]


def test_openvino_errors_are_reported_by_their_cause() -> None:
    error = RuntimeError(
        "Exception from src/inference/src/cpp/infer_request.cpp:189:\n"
        "Check 'getPort(port)' failed at src/inference/src/cpp/infer_request.cpp:191:\n"
        "Port for tensor name axes was not found.\n\n"
    )
    assert openvino_message(error) == "Port for tensor name axes was not found."


def test_compile_leaves_the_model_alone(tmp_path: Path) -> None:
    from ir.fingerprint import fingerprint

    model = _load(small_resnet(), tmp_path)
    before = fingerprint(model)
    _compile(model)
    assert fingerprint(model) == before
