"""recognize-swiglu: every SwiGLU gate, SiLU(gate) * up with SiLU as gate * Sigmoid(gate), is
recorded; a target that declares SwiGLU or Swish gets it fused (the graph before and the graph
expected after, with the same outputs); onnxruntime declares neither, so on the small decoder
each MLP's site is a skip that says why and the graph stays as built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from bert_like import assert_close, outputs_of
from rewrite_cases import assert_same_graph, check_skip, load_text

from ir.capabilities import Capabilities, FusedOp
from ir.model_io import load_model
from ir.node_ids import node_id
from ir.reference import reference_session
from ir.verifier import verify
from passes import target_capabilities
from passes.fusion.recognize_swiglu import RecognizeSwiGlu, RecognizeSwiGluConfig
from tests.small_decoders import SMALL_DECODER, small_decoder
from zoo.builders.llama import build_decoder, seeded_weights

ORT = RecognizeSwiGluConfig(target="onnxruntime")
INPUTS = "float[2,4,8] gate, float[2,4,8] up"
# As zoo/builders/llama.py writes the gate: gate * Sigmoid(gate), then times up.
ZOO = "s = Sigmoid(gate)\n a = Mul(gate, s)\n y = Mul(a, up)"
# Every operand the other way round.
SWAPPED = "s = Sigmoid(gate)\n a = Mul(s, gate)\n y = Mul(up, a)"
NODES = "Sigmoid+Mul+Mul not fused: "


def _model(body: str, opset: int = 17, *, inputs: str = INPUTS, outputs: str = "") -> str:
    output = outputs or "float[2,4,8] y"
    return f"""
        <ir_version: 10, opset_import: ["" : {opset}]>
        g ({inputs}) => ({output})
        {{
            {body}
        }}
    """


def _declaring(monkeypatch: pytest.MonkeyPatch, *ops: FusedOp) -> RecognizeSwiGluConfig:
    """A config whose target declares `ops` (standing in for a vendor's target)."""
    declared = Capabilities(None, frozenset({"float32"}), fused_ops=ops)
    monkeypatch.setattr(target_capabilities, "capabilities_of", lambda name: declared)
    return ORT


def _reasons(tmp_path: Path, before: str, config: RecognizeSwiGluConfig = ORT) -> list[str]:
    """The reasons of the skips on `before`, which the pass leaves unchanged."""
    skips = check_skip(tmp_path, RecognizeSwiGlu(config), before)
    assert {skip.rule for skip in skips} <= {"swiglu"}
    return [skip.reason for skip in skips]


@pytest.mark.parametrize("body", [ZOO, SWAPPED], ids=["zoo", "swapped"])
def test_onnxruntime_declares_no_swiglu_op(tmp_path: Path, body: str) -> None:
    assert _reasons(tmp_path, _model(body)) == [
        f"{NODES}target 'onnxruntime' declares no SwiGLU at opset 17; target 'onnxruntime' "
        "declares no Swish at opset 17"
    ]


def test_without_a_target_below_opset_24_it_is_recorded(tmp_path: Path) -> None:
    no_target = "and no target is given (target=NAME)"
    assert _reasons(tmp_path, _model(ZOO), RecognizeSwiGluConfig()) == [
        f"{NODES}ONNX defines no SwiGLU at opset 17 {no_target}; ONNX defines no Swish at "
        f"opset 17 {no_target}"
    ]


def test_swish_that_onnxruntime_only_expands_is_not_emitted(tmp_path: Path) -> None:
    """onnxruntime runs opset 24's Swish, but as its function body, with no kernel."""
    function = (
        "ONNX's Swish is a function, which a runtime without a kernel expands into more nodes "
        "than the site has"
    )
    assert _reasons(tmp_path / "ort", _model(ZOO, 24)) == [
        f"{NODES}target 'onnxruntime' declares no Swish kernel; {function}"
    ]
    assert _reasons(tmp_path / "none", _model(ZOO, 24), RecognizeSwiGluConfig()) == [
        f"{NODES}no target is given to declare a Swish kernel (target=NAME); {function}"
    ]


def _fuses(tmp_path: Path, config: RecognizeSwiGluConfig, before: str, expected: str) -> str:
    """Run the pass on `before`: the graph is `expected` with the same outputs; the reason."""
    model = load_text(tmp_path / "before", before)
    want = outputs_of(model)
    result = RecognizeSwiGlu(config)(model)
    assert result.modified and result.skipped == ()
    assert_same_graph(model, load_text(tmp_path / "expected", expected))
    assert verify(model) == []
    assert_close(want, outputs_of(model))
    (reason,) = {change.reason for change in result.changes}
    return reason


@pytest.mark.parametrize("body", [ZOO, SWAPPED], ids=["zoo", "swapped"])
def test_a_declared_swish_fuses_the_activation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    config = _declaring(monkeypatch, FusedOp("Swish", opsets=(24, None)))
    expected = _model("s = Swish <alpha = 1.0> (gate)\n y = Mul(s, up)", 24)
    reason = _fuses(tmp_path, config, _model(body, 24), expected)
    assert reason == "3 nodes compute SiLU('gate') * 'up'; Swish computes the SiLU"


def test_a_declared_swiglu_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _declaring(
        monkeypatch, FusedOp("Swish", opsets=(24, None)), FusedOp("SwiGLU", opsets=(28, None))
    )
    before = load_text(tmp_path / "before", _model(ZOO, 28))
    result = RecognizeSwiGlu(config)(before)
    assert result.skipped == ()
    expected = load_text(tmp_path / "expected", _model("y = SwiGLU <alpha = 1.0> (gate, up)", 28))
    assert_same_graph(before, expected)
    assert verify(before) == []  # onnxruntime 1.32 cannot run SwiGLU: no numeric comparison


def test_swiglu_needs_one_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _declaring(monkeypatch, FusedOp("SwiGLU", opsets=(28, None)))
    before = _model(ZOO, 28, inputs="float[2,4,8] gate, float[8] up")
    assert _reasons(tmp_path, before, config) == [
        f"{NODES}SwiGLU does not broadcast: gate 'gate' and up 'up' are not known to have one shape"
    ]


def test_an_undeclared_element_type_is_a_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _declaring(monkeypatch, FusedOp("Swish", opsets=(24, None)))
    before = _model(ZOO, 24, inputs="double[2,4,8] gate, double[2,4,8] up", outputs="double y")
    assert _reasons(tmp_path, before, config) == [
        f"{NODES}target 'onnxruntime' declares Swish for float32, not float64"
    ]


def test_a_silu_read_elsewhere_is_a_skip(tmp_path: Path) -> None:
    before = _model(f"{ZOO}\n z = Relu(a)", outputs="float[2,4,8] y, float[2,4,8] z")
    assert _reasons(tmp_path, before) == [f"{NODES}Mul output has 2 consumers"]


@pytest.mark.parametrize(
    "body",
    [
        "s = Sigmoid(up)\n a = Mul(gate, s)\n y = Mul(a, up)",  # Sigmoid of another value
        "s = Tanh(gate)\n a = Mul(gate, s)\n y = Mul(a, up)",
        "s = Sigmoid(gate)\n a = Mul(gate, s)\n y = Add(a, up)",
    ],
    ids=["other-sigmoid", "tanh", "add"],
)
def test_another_structure_is_no_site(tmp_path: Path, body: str) -> None:
    assert _reasons(tmp_path, _model(body)) == []


def test_the_small_decoder_has_one_site_per_layer_and_stays_as_built(tmp_path: Path) -> None:
    path = tmp_path / "small.onnx"
    onnx.save(small_decoder(), path)
    model = load_model(path)
    result = RecognizeSwiGlu(ORT)(model)
    assert not result.modified and len(model.graph) == 243
    assert len(result.skipped) == 2
    assert [skip.nodes for skip in result.skipped] == [
        tuple(node_id(node) for node in _gate(model, layer)) for layer in (0, 1)
    ]


def _gate(model: oir.Model, layer: int) -> tuple[oir.Node, ...]:
    """The Sigmoid, SiLU Mul and gating Mul of MLP `layer`, in graph order."""
    sigmoids = [node for node in model.graph if node.op_type == "Sigmoid"]
    sigmoid = sigmoids[layer]
    (silu,) = sigmoid.outputs[0].consumers()
    (gated,) = silu.outputs[0].consumers()
    return (sigmoid, silu, gated)


def test_a_declared_swish_on_the_small_decoder_keeps_its_logits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At opset 24, for a target declaring Swish: each layer's three gate nodes become two,
    and the logits stay within 1e-5 (onnxruntime expands Swish, so it runs either graph)."""
    config = _declaring(monkeypatch, FusedOp("Swish", opsets=(24, None)))
    path = tmp_path / "small.onnx"
    onnx.save(build_decoder(SMALL_DECODER, seeded_weights(SMALL_DECODER), opset=24), path)
    unfused, fused = load_model(path), load_model(path)
    result = RecognizeSwiGlu(config)(fused)
    assert result.skipped == () and (len(unfused.graph), len(fused.graph)) == (243, 241)
    assert [node.op_type for node in fused.graph].count("Swish") == 2
    ids = np.array([[5, 17, 3, 42, 8]])
    feeds = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "position_ids": np.arange(5)[None],
        **{
            value.name: np.zeros((1, 2, 0, 8), np.float32)
            for value in unfused.graph.inputs
            if value.name.startswith("past")
        },
    }
    want, got = (reference_session(model).run(["logits"], feeds)[0] for model in (unfused, fused))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
