"""quantize-weights: exact levels, packed bytes and scales on hand-built weights; the graph
before and after; onnxruntime running MatMulNBits (and keeping it) with the output numpy computes
from the dequantized weights; the blocked DequantizeLinear fallback; one-line refusals; the
tied embedding kept consistent on the small decoder; the audit's figures; drift read in KL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import onnxruntime as ort
import pytest
from rewrite_cases import assert_same_graph, load_text

from ir.errors import AsicperfError
from ir.logit_drift import logit_drift
from ir.model_io import load_model
from ir.node_ids import describe_node, origin_ids
from ir.reference import run_reference
from passes.audit import ChangeKind
from passes.base import PassResult
from passes.pipeline import PipelineError, parse_pipeline
from passes.precision.blockwise import quantize_blocks
from passes.precision.quantize_weights import QuantizeWeights, QuantizeWeightsConfig
from passes.sensitivity import DriftBudget, DriftProbe, fit_budget, layer_sensitivity
from targets.executable import compile_model
from targets.registry import get_target
from tests.small_decoders import small_decoder
from zoo.llm.decoder_io import decoder_signature
from zoo.llm.session_generation import SessionGenerator, left_padded

ORT = "onnxruntime"
# Levels 0..15, twice: byte j of a 4-bit block holds levels 2j (low nibble) and 2j + 1.
NIBBLES = [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE]
LEVELS = np.arange(32) % 16


def _symmetric_weight() -> np.ndarray:
    """[K=32, N=2]: column 0 is 0.5 x (level - 8), extreme -4 (scale 0.5); column 1 is -0.25 x
    (level - 8), extreme +2 first (scale -0.25), with k=15 at the opposite extreme -2, one
    step beyond the 7 levels above the centre."""
    weight = np.stack([0.5 * (LEVELS - 8), -0.25 * (LEVELS - 8)], axis=1).astype(np.float32)
    weight[15, 1] = -2.0
    return weight


def _asymmetric_weight() -> np.ndarray:
    """[K=32, N=2]: column 0 spans [-0.4, 1.1] (scale 0.1, zero point 4), column 1 [0, 3]
    (scale 0.2, zero point 0); both read as levels 0..15."""
    return np.stack([0.1 * (LEVELS - 4), 0.2 * LEVELS], axis=1).astype(np.float32)


def _values(array: np.ndarray) -> str:
    return ", ".join(f"{value:.9g}" for value in array.ravel())


def _matmul_text(weight: np.ndarray, opset: int = 17, rows: int = 3) -> str:
    k, n = weight.shape
    return f"""<ir_version: 10, opset_import: ["" : {opset}]>
g (float[{rows}, {k}] x) => (float[{rows}, {n}] y)
<float[{k}, {n}] w = {{{_values(weight)}}}> {{
    y = MatMul(x, w)
}}"""


def _quantize(model: oir.Model, **options: object) -> PassResult:
    return QuantizeWeights(QuantizeWeightsConfig(**{"target": ORT, **options}))(model)


def _initializers(model: oir.Model, op_type: str) -> list[np.ndarray]:
    (node,) = [node for node in model.graph if node.op_type == op_type]
    return [value.const_value.numpy() for value in node.inputs[1:]]


def test_symmetric_4_bit_levels_are_packed_low_nibble_first(tmp_path: Path) -> None:
    model = load_text(tmp_path, _matmul_text(_symmetric_weight()))
    _quantize(model, block=32)
    packed, scales = _initializers(model, "MatMulNBits")
    assert packed.dtype == np.uint8 and packed.shape == (2, 1, 16)
    assert packed.reshape(2, 16).tolist() == [NIBBLES * 2, NIBBLES * 2]
    np.testing.assert_array_equal(scales, np.array([[0.5], [-0.25]], np.float32))
    (node,) = [node for node in model.graph if node.op_type == "MatMulNBits"]
    attributes = {key: node.attributes[key].value for key in node.attributes}
    assert attributes == {"K": 32, "N": 2, "bits": 4, "block_size": 32, "accuracy_level": 4}


def test_block_16_gives_each_half_its_scale(tmp_path: Path) -> None:
    model = load_text(tmp_path, _matmul_text(_symmetric_weight()))
    _quantize(model, block=16)
    packed, scales = _initializers(model, "MatMulNBits")
    assert packed.shape == (2, 2, 8)
    assert packed.tolist() == [[NIBBLES, NIBBLES], [NIBBLES, NIBBLES]]
    np.testing.assert_array_equal(scales, np.array([[0.5, 0.5], [-0.25, -0.25]], np.float32))


def test_8_bit_levels_are_one_byte_each_and_the_opposite_extreme_is_clamped(
    tmp_path: Path,
) -> None:
    model = load_text(tmp_path, _matmul_text(_symmetric_weight()))
    _quantize(model, bits=8, block=32)
    packed, scales = _initializers(model, "MatMulNBits")
    expected = (16 * LEVELS).tolist()
    clamped = list(expected)
    clamped[15] = 255  # -2 / -0.015625 = 128, one above the highest level 127 (+128 offset)
    assert packed.reshape(2, 32).tolist() == [expected, clamped]
    np.testing.assert_array_equal(scales, np.array([[4 / 128], [-2 / 128]], np.float32))


@pytest.mark.parametrize(("block", "zero_points"), [(32, [[0x04], [0x00]]), (16, [[0x44], [0x00]])])
def test_asymmetric_4_bit_zero_points_are_packed_like_the_levels(
    tmp_path: Path, block: int, zero_points: list[list[int]]
) -> None:
    model = load_text(tmp_path, _matmul_text(_asymmetric_weight()))
    _quantize(model, block=block, symmetric=False)
    packed, scales, points = _initializers(model, "MatMulNBits")
    assert packed.reshape(2, 16).tolist() == [NIBBLES * 2, NIBBLES * 2]
    np.testing.assert_allclose(scales, np.array([[0.1], [0.2]]).repeat(32 // block, 1), 1e-6)
    assert points.dtype == np.uint8 and points.tolist() == zero_points


def test_an_odd_number_of_4_bit_zero_points_leaves_the_last_high_nibble_empty() -> None:
    # three blocks of 16 whose minimums are -0.1, -0.2 and -0.3: zero points 1, 2, 3
    table = np.concatenate([0.1 * (np.arange(16) - z) for z in (1, 2, 3)])[None]
    quantized = quantize_blocks(table.astype(np.float32), bits=4, block=16, symmetric=False)
    assert quantized.zero_points.tolist() == [[1, 2, 3]]
    assert quantized.packed_zero_points().tolist() == [[0x21, 0x03]]
    assert quantized.packed_levels().reshape(-1).tolist() == NIBBLES * 3


def test_a_k_that_is_no_multiple_of_the_block_is_padded_with_zeros() -> None:
    table = np.linspace(-1, 1, 40, dtype=np.float32)[None]
    quantized = quantize_blocks(table, bits=4, block=32, symmetric=True)
    assert quantized.levels.shape == (1, 2, 32)
    assert quantized.levels[0, 1, 8:].tolist() == [8] * 24  # zeros: the zero point
    assert quantized.dequantized().shape == (1, 40)


AFTER = f"""<ir_version: 10, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[3, 32] x) => (float[3, 2] y)
<uint8[2, 1, 16] b = {{{_values(np.array(NIBBLES * 4))}}}, float[2, 1] s = {{0.5, -0.25}}> {{
    y = com.microsoft.MatMulNBits <K = 32, N = 2, bits = 4, block_size = 32,
        accuracy_level = 4> (x, b, s)
}}"""


def test_graph_before_and_after(tmp_path: Path) -> None:
    model = load_text(tmp_path / "before", _matmul_text(_symmetric_weight()))
    result = _quantize(model)
    assert_same_graph(model, load_text(tmp_path / "after", AFTER), rtol=0, atol=0)
    assert [change.kind for change in result.changes] == [
        ChangeKind.GRAPH_IO,  # the com.microsoft import
        ChangeKind.ADDED_NODE,
        ChangeKind.REMOVED_NODE,
        ChangeKind.GRAPH_IO,  # the totals
    ]


def test_the_audit_gives_each_weights_figures_and_the_totals(tmp_path: Path) -> None:
    model = load_text(tmp_path, _matmul_text(_symmetric_weight()))
    result = _quantize(model)
    added = result.changes[1]
    assert added.rule == "matmul-nbits" and added.replaces == ("n0",)
    # one value off by a step of 0.25 of the 64: mean 0.25 / 64; 256 B of floats become 32 B of
    # levels and 8 B of scales
    assert added.reason == (
        "node n0 (MatMul): weight 'w' [K=32, N=2]: 4 bits, block 32, symmetric (scale = signed "
        "max / -8); rounding error max 0.25 mean 0.00390625; 256 B -> 40 B"
    )
    assert result.changes[-1].reason == (
        "1 weights quantized: 256 B -> 40 B (6.40x smaller); model initializers 256 B -> 40 B"
    )


def _random_weight(k: int, n: int) -> np.ndarray:
    return np.random.default_rng(k + n).standard_normal((k, n)).astype(np.float32)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize(("k", "block"), [(64, 32), (48, 16)])
def test_onnxruntime_computes_x_times_the_dequantized_weight(
    tmp_path: Path, bits: int, symmetric: bool, k: int, block: int
) -> None:
    weight = _random_weight(k, 5)
    model = load_text(tmp_path, _matmul_text(weight))
    # accuracy level 0: the float input is not quantized, the output is exact up to the order of
    # the additions
    _quantize(model, bits=bits, block=block, symmetric=symmetric, accuracy_level=0)
    x = np.random.default_rng(1).standard_normal((3, k)).astype(np.float32)
    (got,) = run_reference(model, {"x": x})
    dequantized = quantize_blocks(weight.T, bits, block, symmetric).dequantized()
    np.testing.assert_allclose(got, x @ dequantized.T, rtol=1e-5, atol=1e-5)
    assert np.abs(got - x @ weight).max() > 1e-3  # the rounding is really there


def test_onnxruntimes_optimized_graph_keeps_matmul_nbits(tmp_path: Path) -> None:
    model = load_text(tmp_path, _matmul_text(_random_weight(64, 5)))
    _quantize(model)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(
        oir.to_proto(model).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    optimized = onnx.load(tmp_path / "optimized.onnx")
    assert [node.op_type for node in optimized.graph.node] == ["MatMulNBits"]


@pytest.mark.parametrize(
    ("bits", "symmetric", "dtype"),
    [(4, True, "INT4"), (4, False, "UINT4"), (8, True, "INT8"), (8, False, "UINT8")],
)
def test_without_matmul_nbits_opset_21_gets_a_blocked_dequantize_linear(
    tmp_path: Path, bits: int, symmetric: bool, dtype: str
) -> None:
    weight = _random_weight(48, 5)
    model = load_text(tmp_path, _matmul_text(weight, opset=21))
    result = _quantize(model, target="", bits=bits, block=16, symmetric=symmetric)
    dequantize, matmul = list(model.graph)
    assert (dequantize.op_type, matmul.op_type) == ("DequantizeLinear", "MatMul")
    assert dequantize.attributes["axis"].value == 0
    assert dequantize.attributes["block_size"].value == 16
    levels, scales = dequantize.inputs[0], dequantize.inputs[1]
    assert levels.dtype.name == dtype and levels.shape.dims == (48, 5)
    assert scales.shape.dims == (3, 5)
    assert (len(dequantize.inputs) == 3) is not symmetric  # zero points when asymmetric
    assert matmul.inputs[1] is dequantize.outputs[0]
    assert "w" not in model.graph.initializers
    assert {change.rule for change in result.changes} >= {"dequantize-linear", "totals"}
    x = np.random.default_rng(1).standard_normal((3, 48)).astype(np.float32)
    (got,) = run_reference(model, {"x": x})
    dequantized = quantize_blocks(weight.T, bits, 16, symmetric).dequantized()
    np.testing.assert_allclose(got, x @ dequantized.T, rtol=1e-5, atol=1e-5)


def test_without_matmul_nbits_below_opset_21_it_refuses_before_any_change(
    tmp_path: Path,
) -> None:
    model = load_text(tmp_path, _matmul_text(_random_weight(32, 2)))
    with pytest.raises(AsicperfError) as error:
        _quantize(model, target="")
    assert str(error.value) == (
        "quantize-weights bits=4: com.microsoft.MatMulNBits is not a standard ONNX op and no "
        "target is given (target=NAME), and the model's opset 17 has no blocked "
        "DequantizeLinear (needs 21)"
    )
    assert [node.op_type for node in model.graph] == ["MatMul"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("bits=3", r"bits=3 is outside 4 <= bits <= 8 \(4 or 8\)"),
        ("bits=5", "bits=5: expected 4 or 8"),
        ("block=24", r"block=24: expected a power of two >= 16 \(16, 32, 64, 128, ...\)"),
        ("block=8", r"block=8 is outside block >= 16 \(a power of two\)"),
        ("accuracy_level=5", "accuracy_level=5 is outside 0 <= accuracy_level <= 4"),
        ("head_bits=2", r"head_bits=2: expected 0 \(keep FP32\), 4 or 8"),
        ("include=Gemm", "include: 'Gemm' is neither a quantizable op type"),
    ],
)
def test_bad_options_are_one_line(options: str, message: str) -> None:
    with pytest.raises(PipelineError, match=f"^pass 'quantize-weights': {message}") as error:
        parse_pipeline(f"quantize-weights{{{options}}}")
    assert "\n" not in str(error.value)


def test_a_block_larger_than_k_is_refused_naming_the_node(tmp_path: Path) -> None:
    model = load_text(tmp_path, _matmul_text(_random_weight(32, 2)))
    with pytest.raises(AsicperfError) as error:
        _quantize(model, block=64)
    assert str(error.value) == (
        "quantize-weights: block=64 is larger than K=32 of node n0 (MatMul); use block <= 32 "
        "or exclude=n0"
    )
    assert [node.op_type for node in model.graph] == ["MatMul"]


def test_excluded_and_non_constant_weights_are_skipped_with_the_reason(tmp_path: Path) -> None:
    text = f"""<ir_version: 10, opset_import: ["" : 17]>
g (float[3, 32] x, float[32, 32] v) => (float[3, 32] y)
<float[32, 32] w = {{{_values(_random_weight(32, 32))}}}> {{
    a = MatMul(x, w)
    y = MatMul(a, v)
}}"""
    model = load_text(tmp_path, text)
    result = _quantize(model, exclude=("n0",))
    assert not result.modified
    assert [skip.reason for skip in result.skipped] == [
        "node n0 (MatMul) not quantized: excluded by exclude=n0",
        "node n1 (MatMul) not quantized: weight 'v' is not a constant initializer (nor a "
        "Transpose of one)",
    ]


@pytest.fixture(scope="module")
def decoder_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decoder") / "small.onnx"
    onnx.save(small_decoder(), path)
    return path


def _nbits_table(node: oir.Node) -> np.ndarray:
    """The [N, K] table an 8-bit symmetric MatMulNBits stands for, read from its inputs."""
    packed, scales = (value.const_value.numpy() for value in node.inputs[1:3])
    levels = packed.astype(np.float32) - 128  # [N, blocks, block]
    return (levels * scales[..., None]).reshape(packed.shape[0], -1)


def test_the_tied_embedding_reads_the_projections_rounded_table(decoder_path: Path) -> None:
    model = load_model(decoder_path)
    table = model.graph.initializers["embed_tokens"].const_value.numpy()
    result = _quantize(model)
    projection = next(node for node in model.graph if node.outputs[0].name == "logits")
    assert projection.op_type == "MatMulNBits" and projection.attributes["bits"].value == 8
    embedding = model.graph.initializers["embed_tokens"]
    assert [reader.op_type for reader, _ in embedding.uses()] == ["Gather"]  # no Transpose left
    gather_table = embedding.const_value.numpy()
    np.testing.assert_array_equal(gather_table, _nbits_table(projection))
    np.testing.assert_array_equal(gather_table, quantize_blocks(table, 8, 32, True).dequantized())
    (shared,) = [change for change in result.changes if change.rule == "shared-weight"]
    assert shared.kind == ChangeKind.WEIGHTS
    assert shared.reason == (
        "'embed_tokens' now holds its 8-bit rounded values: its other readers and the quantized "
        f"{origin_ids(projection)[0]} see the same weights"
    )
    bodies = [node for node in model.graph if node.op_type == "MatMulNBits"]
    assert len(bodies) == 15 and {node.attributes["bits"].value for node in bodies} == {4, 8}


def test_head_bits_0_keeps_the_output_projection_fp32(decoder_path: Path) -> None:
    model = load_model(decoder_path)
    table = model.graph.initializers["embed_tokens"].const_value.numpy()
    result = _quantize(model, head_bits=0)
    projection = next(node for node in model.graph if node.outputs[0].name == "logits")
    assert projection.op_type == "MatMul"
    assert projection.inputs[1].producer().op_type == "Transpose"
    embedding = model.graph.initializers["embed_tokens"].const_value.numpy()
    np.testing.assert_array_equal(embedding, table)
    assert (
        f"{describe_node(projection)} not quantized: the output projection is kept FP32 "
        "(head_bits=0)"
    ) in [skip.reason for skip in result.skipped]
    assert sum(node.op_type == "MatMulNBits" for node in model.graph) == 14


def _generator(path: Path, model: oir.Model) -> SessionGenerator:
    executable = compile_model(get_target(ORT), model)
    return SessionGenerator(
        executable.session(1), executable.output_names, decoder_signature(model, str(path))
    )


def test_the_8_bit_decoder_generates_fp32s_tokens_on_onnxruntime(decoder_path: Path) -> None:
    """8 bits: the seeded decoder's random weights have no structure that 4 bits would keep
    (its greedy tokens change from the first one), so the generation is checked at 8."""
    reference = _generator(decoder_path, load_model(decoder_path))
    model = load_model(decoder_path)
    _quantize(model, bits=8)
    quantized = _generator(decoder_path, model)
    prompt = left_padded([[5, 17, 3, 42, 8, 11, 29, 60]], 0)
    tokens = [int(step[0, 0]) for step in quantized.generate(prompt, 8)]
    assert tokens == [int(step[0, 0]) for step in reference.generate(prompt, 8)]
    ids = np.array([[5, 17, 3, 42, 8, 11, 29, 60, 2, 31, 7, 50]])
    drift = logit_drift(reference.logits(ids), quantized.logits(ids))
    # the random weights' next-token scores are nearly flat: one position of 12 is a near tie
    assert drift.kl_mean < 1e-3 and drift.same_top1_tokens >= 11


PROBE_DIMS = {"sequence_length": 8, "past_sequence_length": 0, "total_sequence_length": 8}


def test_sensitivity_reads_a_decoders_drift_in_kl(tmp_path: Path) -> None:
    path = tmp_path / "one_layer.onnx"
    onnx.save(small_decoder(layers=1), path)
    model = load_model(path)
    probe = DriftProbe(model, bindings=PROBE_DIMS)
    budget = DriftBudget.parse("kl=0")
    passes = [QuantizeWeights(QuantizeWeightsConfig(target=ORT))]
    ranking = layer_sensitivity(model, passes, probe, budget)
    assert len(ranking) == 8 and {layer.op_type for layer in ranking} == {"MatMul"}
    kls = [budget.measure(list(layer.drifts)) for layer in ranking]
    assert kls == sorted(kls, reverse=True) and kls[0] > 0
    everything = budget.measure(probe.drift(passes[0](load_model(path)).model))
    fit = fit_budget(model, passes, DriftBudget("kl", everything / 2), probe)
    # the most sensitive layers go to 8 bits first; none needs FP32 for half the drift
    assert fit.holds and fit.milder[0].node == ranking[0].node and fit.kept == ()
    widths = Counter(
        node.attributes["bits"].value
        for node in fit.result.model.graph
        if node.op_type == "MatMulNBits"
    )
    # 7 projections at 4 bits and the head at 8 in a plain run; each milder layer (the head
    # perhaps among them) moves to 8
    assert widths[4] + widths[8] == 8 and widths[4] <= 7 - len(fit.milder) + 1
    record = fit.to_json(DriftBudget("kl", everything / 2))
    assert record["measured"] <= everything / 2 and record["kept_fp32"] == []
    assert [layer["node"] for layer in record["kept_milder"]] == [m.node for m in fit.milder]


def test_a_budget_8_bits_cannot_meet_keeps_layers_in_fp32(tmp_path: Path) -> None:
    path = tmp_path / "one_layer.onnx"
    onnx.save(small_decoder(layers=1), path)
    model = load_model(path)
    probe = DriftProbe(model, bindings=PROBE_DIMS)
    passes = [QuantizeWeights(QuantizeWeightsConfig(target=ORT))]
    fit = fit_budget(model, passes, DriftBudget("kl", 0.0), probe)
    # every layer at 8 bits still drifts, so all end in FP32: nothing left at 8 bits
    assert fit.holds and len(fit.kept) == 8 and fit.milder == ()
    assert not [node for node in fit.result.model.graph if node.op_type == "MatMulNBits"]


def test_kl_needs_a_logits_output(tmp_path: Path) -> None:
    model = load_text(tmp_path, _matmul_text(_random_weight(32, 2)))
    passes = [QuantizeWeights(QuantizeWeightsConfig(target=ORT))]
    with pytest.raises(AsicperfError, match=r"^kl: the model has no vocabulary output"):
        layer_sensitivity(model, passes, DriftProbe(model), DriftBudget.parse("kl=0.01"))


@pytest.mark.slow
def test_smollm2_in_4_bits_is_a_third_of_its_bytes_and_runs_on_onnxruntime() -> None:
    from zoo.resolve import resolve_model

    path = resolve_model("smollm2-135m")
    model = load_model(path)
    before = sum(value.const_value.nbytes for value in model.graph.initializers.values())
    result = _quantize(model, bits=4, block=32)
    after = sum(value.const_value.nbytes for value in model.graph.initializers.values())
    # 4-bit body, 8-bit head, and the FP32 (rounded) table the embedding Gather still reads
    assert after < 0.4 * before
    assert sum(1 for node in model.graph if node.op_type == "MatMulNBits") == 211
    assert result.changes[-1].reason.startswith("211 weights quantized: ")
    generator = _generator(Path(path), model)
    (first,) = generator.generate(left_padded([[1, 2, 3, 4]], 0), 1)
    assert first.shape == (1, 1)
