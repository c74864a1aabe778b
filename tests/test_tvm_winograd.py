"""Winograd F(2x2, 3x3) on the tvm target: the transform matrices compute a 3x3 correlation, the
rewrite takes exactly the 3x3 stride-1 float32 convolutions it should (with their bias, residual
and ReLU folded into the output transform), the rule schedules both transforms exactly, and whole
models agree with the reference target with the rewrite on and off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from small_models import small_resnet

from ir.model_io import load_model
from ir.seeded_inputs import seeded_inputs
from targets.reference_target import ReferenceTarget
from targets.tvm_schedules.winograd import (
    INPUT_TERMS,
    OUTPUT_TERMS,
    WEIGHT_TRANSFORM,
    transformed_weights,
)
from targets.tvm_schedules.winograd_rule import WinogradRule
from tests.tvm_schedule_helpers import (
    TUNING,
    assert_declines,
    fused_functions,
    schedule_and_check,
    trace,
)


def _matrix(terms: tuple[tuple[tuple[int, int], ...], ...]) -> np.ndarray:
    matrix = np.zeros((len(terms), 4))
    for row, pairs in enumerate(terms):
        for column, sign in pairs:
            matrix[row, column] = sign
    return matrix


def test_transform_matrices_compute_a_3x3_correlation() -> None:
    """A^T [(G g G^T) * (B^T d B)] A is the 2x2 output of the 3x3 correlation of d with g, to
    float64 rounding, for every output and input channel pair (U from HWIO weights)."""
    rng = np.random.default_rng(0)
    tile = rng.standard_normal((4, 4, 2))  # 4x4 input, 2 channels
    hwio = rng.standard_normal((3, 3, 2, 3))  # 2 -> 3 channels
    b_t, a_t = _matrix(INPUT_TERMS), _matrix(OUTPUT_TERMS)
    assert WEIGHT_TRANSFORM.shape == (4, 3)
    u = np.einsum("ar,rscf,bs->abcf", WEIGHT_TRANSFORM, hwio, WEIGHT_TRANSFORM)
    v = np.einsum("ai,ijc,bj->abc", b_t, tile, b_t)
    winograd = np.einsum("ya,abf,xb->yxf", a_t, np.einsum("abcf,abc->abf", u, v), a_t)
    direct = np.array(
        [
            [np.einsum("ijc,ijcf->f", tile[y : y + 3, x : x + 3], hwio) for x in range(2)]
            for y in range(2)
        ]
    )
    np.testing.assert_allclose(winograd, direct, rtol=1e-12, atol=1e-12)
    flat = transformed_weights(hwio.astype(np.float32))
    assert flat.shape == (16, 2, 3) and flat.dtype == np.float32
    np.testing.assert_allclose(flat, u.reshape(16, 2, 3), rtol=1e-6, atol=1e-6)


def _conv(
    name: str,
    source: str,
    channels: int,
    filters: int,
    kernel: int,
    stride: int = 1,
    group: int = 1,
) -> str:
    pad = kernel // 2
    return (
        f"{name} = Conv<kernel_shape=[{kernel}, {kernel}], strides=[{stride}, {stride}], "
        f"pads=[{pad}, {pad}, {pad}, {pad}], group={group}>({source}, w_{name}, b_{name})"
    )


def _graph(body: list[str], weights: dict[str, tuple[int, ...]], out: str, shape: str) -> str:
    """An ONNX text model over x: float[1, 16, 9, 9], weights as initializers (constants)."""
    inits = ", ".join(
        f"float[{', '.join(map(str, dims))}] {name} = {{{', '.join(['0.5'] * int(np.prod(dims)))}}}"
        for name, dims in weights.items()
    )
    lines = "\n    ".join(body)
    return f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 16, 9, 9] x) => (float{shape} {out})
<{inits}> {{
    {lines}
}}"""


def _conv_weights(name: str, channels: int, filters: int, kernel: int) -> dict[str, tuple]:
    return {f"w_{name}": (filters, channels, kernel, kernel), f"b_{name}": (filters,)}


def test_the_rewrite_takes_3x3_stride_1_convolutions_only() -> None:
    """Of a 3x3 stride-1, a 3x3 stride-2, a 1x1 and a grouped 3x3 convolution, only the first
    becomes Winograd's steps; its bias and ReLU fold into the output transform."""
    body = [
        _conv("a", "x", 16, 16, 3),
        "ra = Relu(a)",
        _conv("b", "ra", 16, 16, 3, stride=2),
        _conv("c", "b", 16, 16, 1),
        _conv("d", "c", 16, 16, 3, group=4),
    ]
    weights = {
        **_conv_weights("a", 16, 16, 3),
        **_conv_weights("b", 16, 16, 3),
        **_conv_weights("c", 16, 16, 1),
        **{"w_d": (16, 4, 3, 3), "b_d": (16,)},
    }
    text = _graph(body, weights, "d", "[1, 16, 5, 5]")
    direct = fused_functions(text)
    rewritten = fused_functions(text, winograd=True)
    assert not any("winograd" in name for name in direct)
    winograd = sorted(name for name in rewritten if "winograd" in name)
    assert winograd == ["fused_transpose_winograd_input", "winograd_output_add_relu"]
    assert sum("conv2d" in name for name in direct) == 4
    assert sum("conv2d" in name for name in rewritten) == 3


def test_the_rule_schedules_both_transforms_exactly() -> None:
    """9x9 output: 5x5 tiles, the last row and column half outside; the input transform reads
    zero padding outside the input. Both unroll their tile and vectorize the channels."""
    body = [_conv("a", "x", 16, 32, 3), "ra = Relu(a)"]
    text = _graph(body, _conv_weights("a", 16, 32, 3), "ra", "[1, 32, 9, 9]")
    functions = fused_functions(text, winograd=True)
    matches_input = [f for n, f in functions.items() if n.endswith("winograd_input")]
    for name in ("winograd_input", "winograd_output_add_relu"):
        matches = [f for n, f in functions.items() if n.endswith(name)]
        assert len(matches) == 1, sorted(functions)
        outcome = schedule_and_check(WinogradRule(), matches[0])
        applied = trace(outcome)
        for primitive in ("parallel", "vectorize", "unroll"):
            assert primitive in applied
    assert "25 tiles x 16 channels" in WinogradRule().apply(matches_input[0], TUNING).detail


def test_the_rule_declines_other_functions() -> None:
    body = [_conv("a", "x", 16, 16, 1), "ra = Relu(a)"]
    functions = fused_functions(_graph(body, _conv_weights("a", 16, 16, 1), "ra", "[1, 16, 9, 9]"))
    (conv,) = [func for name, func in functions.items() if "conv2d" in name]
    assert_declines(WinogradRule(), conv, "no winograd_input or winograd_output block")


def _residual_model(path: Path, size: int, batch: int | str) -> Path:
    """Conv+bias -> Add(residual: the block's input) -> Relu, with random weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    channels = 24
    weights = [
        numpy_helper.from_array(
            (rng.standard_normal((channels, channels, 3, 3)) / 12).astype(np.float32), "w"
        ),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Add", ["c", "x"], ["s"]),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    shape = [batch, channels, size, size]
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    file = path / f"residual_{size}_{batch}.onnx"
    onnx.save(model, file)
    return file


def test_a_symbolic_batch_keeps_the_convolutions_direct_and_the_record_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rewrite needs static shapes: with a symbolic batch nothing qualifies, and the record
    does not claim Winograd."""
    pytest.importorskip("tvm", reason="apache-tvm is not installed")
    from targets.tvm_target import TvmConfig, TvmTarget

    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path / "cache"))
    model = load_model(_residual_model(tmp_path, 8, "N"))
    compiled = TvmTarget().compile(model, TvmConfig())
    assert compiled.record.extra["winograd"].startswith("on, but no convolution qualified")
    assert not any(s["rule"] == "winograd" for s in compiled.record.extra["schedules"])


@pytest.mark.parametrize(("size", "batch"), [(8, 1), (7, 2)])
def test_a_residual_block_agrees_with_the_reference_with_and_without_winograd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, batch: int
) -> None:
    """Even and odd sizes (a half-outside last tile), one and two images: the bias, the
    residual Add and the Relu run in the output transform; the compile record says so."""
    pytest.importorskip("tvm", reason="apache-tvm is not installed")
    from targets.tvm_target import TvmConfig, TvmTarget

    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path / "cache"))
    model = load_model(_residual_model(tmp_path, size, batch))
    feeds = seeded_inputs(model)
    reference = ReferenceTarget()
    (want,) = reference.load(reference.compile(model, reference.config_type()), batch).run(feeds)
    target = TvmTarget()
    for winograd in (True, False):
        compiled = target.compile(model, TvmConfig(winograd=winograd))
        (got,) = target.load(compiled, batch).run(feeds)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        rules = {s["function"]: s["rule"] for s in compiled.record.extra["schedules"]}
        outputs = [name for name, rule in rules.items() if rule == "winograd"]
        summary = compiled.record.extra["winograd"]
        assert summary.startswith("on: 2 transform functions" if winograd else "off")
        if winograd:
            # the model's NCHW input and output transposes fuse into the transforms
            steps = sorted(name.split("winograd_")[1] for name in outputs)
            assert steps == ["input", "output_add_add_relu"]
        else:
            assert not outputs and any(rule == "conv2d" for rule in rules.values())


def test_small_resnet_agrees_with_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tvm", reason="apache-tvm is not installed")
    from targets.tvm_target import TvmConfig, TvmTarget

    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path / "cache"))
    file = tmp_path / "small_resnet.onnx"
    onnx.save(small_resnet(), file)
    model = load_model(file, bindings={"batch": 2})
    feeds = seeded_inputs(model, bindings={"batch": 2})
    reference = ReferenceTarget()
    (want,) = reference.load(reference.compile(model, reference.config_type()), 2).run(feeds)
    target = TvmTarget()
    (got,) = target.load(target.compile(model, TvmConfig()), 2).run(feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
