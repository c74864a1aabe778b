"""fuse-rms-norm: decomposed RMSNorm, each way exporters spell it, becomes one normalization op,
and a residual Add before it becomes com.microsoft SkipSimplifiedLayerNormalization (the graph
before and the graph expected after, with the same outputs); every skip says why; the fused
small decoder gives the unfused one's logits and tokens on onnxruntime."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from bert_like import assert_close, outputs_of
from rewrite_cases import assert_same_graph, check_skip, load_text

from ir.capabilities import Capabilities, FusedOp
from ir.model_io import load_model
from ir.reference import reference_session
from ir.verifier import verify
from passes import target_capabilities
from passes.audit import ChangeKind
from passes.base import PassResult
from passes.fusion.fuse_rms_norm import FuseRmsNorm, FuseRmsNormConfig
from targets.executable import compile_model
from targets.registry import get_target
from tests.small_decoders import SMALL_DECODER
from zoo.builders.llama import build_decoder, seeded_weights
from zoo.llm.decoder_io import decoder_signature
from zoo.llm.session_generation import PromptBatch, SessionGenerator, left_padded

pytest.importorskip("onnxruntime")

# onnxruntime declares SimplifiedLayerNormalization, RMSNormalization from opset 23, and
# com.microsoft SkipSimplifiedLayerNormalization.
ORT = FuseRmsNormConfig(target="onnxruntime")
WEIGHT = np.random.default_rng(0).standard_normal(8).astype(np.float32)
WEIGHTS = {
    "two": np.array(2.0, np.float32),
    "one": np.array(1.0, np.float32),
    "eps": np.array(1e-5, np.float32),
    "weight": WEIGHT,
    "axes": np.array([-1]),
}
# As zoo/builders/llama.py writes it: Pow 2, Reciprocal, Mul x, Mul weight.
ZOO = (
    "sq = Pow(x, two)\n var = ReduceMean <axes = [-1]> (sq)\n ve = Add(var, eps)\n"
    "sd = Sqrt(ve)\n r = Reciprocal(sd)\n n = Mul(x, r)\n y = Mul(n, weight)"
)
# As Hugging Face's LlamaRMSNorm exports: x * rsqrt(var + eps) with rsqrt as Div(1, Sqrt),
# then weight * x.
HUGGING_FACE = (
    "sq = Pow(x, two)\n var = ReduceMean <axes = [-1]> (sq)\n ve = Add(eps, var)\n"
    "sd = Sqrt(ve)\n r = Div(one, sd)\n n = Mul(r, x)\n y = Mul(weight, n)"
)
# x * x, a Div of x by the root, no weight.
DIVIDED = (
    "sq = Mul(x, x)\n var = ReduceMean <axes = [2]> (sq)\n ve = Add(var, eps)\n"
    "sd = Sqrt(ve)\n y = Div(x, sd)"
)
ZOO_NODES = "Pow+ReduceMean+Add+Sqrt+Reciprocal+Mul not fused: "
SKIP_OP = "com.microsoft.SkipSimplifiedLayerNormalization"


def _edit(body: str, old: str, new: str) -> str:
    """`body` with every `old` replaced by `new` (there must be one)."""
    assert old in body, f"{old!r} is not in the body"
    return body.replace(old, new)


# From opset 18 the axes are an input.
ZOO_18 = _edit(ZOO, "ReduceMean <axes = [-1]> (sq)", "ReduceMean(sq, axes)")
# A residual Add before the norm: the zoo form on h = a + b.
RESIDUAL = "x = Add(a, b)\n " + ZOO


def _tensor(name: str, array: np.ndarray) -> str:
    kind = {"float32": "float", "float16": "float16", "int64": "int64"}[array.dtype.name]
    dims = f"[{','.join(map(str, array.shape))}]" if array.ndim else ""
    # The text format spells float16 values by their bits.
    stored = array.view(np.uint16) if array.dtype == np.float16 else array
    values = ", ".join(repr(value) for value in stored.ravel().tolist())
    return f"{kind}{dims} {name} = {{{values}}}"


def _model(
    body: str,
    opset: int = 17,
    *,
    inputs: str = "float[2,4,8] x",
    outputs: str = "float[2,4,8] y",
    microsoft: bool = False,
    **changed: np.ndarray,
) -> str:
    """ONNX text of a graph computing `body` with the RMSNorm constants as initializers, except
    those declared as graph `inputs` (those nothing reads drop out of the comparison);
    `microsoft` imports com.microsoft, as a skip-fused graph does."""
    given = {declared.split()[-1] for declared in inputs.split(",")}
    constants = {**WEIGHTS, **changed}
    weights = ", ".join(_tensor(name, constants[name]) for name in constants.keys() - given)
    imports = f'"" : {opset}' + (', "com.microsoft" : 1' if microsoft else "")
    return f"""
        <ir_version: 10, opset_import: [{imports}]>
        g ({inputs}) => ({outputs}) <{weights}>
        {{
            {body}
        }}
    """


def _simplified(inputs: str = "x, weight", output: str = "y") -> str:
    return f"{output} = SimplifiedLayerNormalization <axis = -1, epsilon = 1e-05> ({inputs})"


def _rewrite(
    tmp_path: Path, config: FuseRmsNormConfig, before: str, expected: str, *, run: bool = True
) -> PassResult:
    """Run the pass on `before`: the graph is `expected` and (when `run`: onnxruntime has the
    op) computes the same outputs."""
    model = load_text(tmp_path / "before", before)
    want = outputs_of(model) if run else None
    result = FuseRmsNorm(config)(model)
    assert result.modified and result.skipped == ()
    assert_same_graph(model, load_text(tmp_path / "expected", expected))
    assert verify(model) == []
    if want is not None:
        assert_close(want, outputs_of(model))
    return result


@pytest.mark.parametrize(
    ("body", "opset"), [(ZOO, 17), (HUGGING_FACE, 17), (ZOO_18, 18)], ids=["zoo", "hf", "axes"]
)
def test_the_weighted_forms_become_simplified_layer_normalization(
    tmp_path: Path, body: str, opset: int
) -> None:
    result = _rewrite(tmp_path, ORT, _model(body, opset), _model(_simplified(), opset))
    reason = "7 nodes compute RMSNorm of 'x' over its last axis"
    assert {(change.rule, change.reason) for change in result.changes} == {("rms-norm", reason)}
    (added,) = [change for change in result.changes if change.kind == ChangeKind.ADDED_NODE]
    assert added.replaces == tuple(f"n{index}" for index in range(7))


def test_a_norm_without_weight_scales_by_ones(tmp_path: Path) -> None:
    expected = _model(_simplified("x, ones"), ones=np.ones(8, np.float32))
    result = _rewrite(tmp_path, ORT, _model(DIVIDED), expected)
    notes = [change.reason for change in result.changes if change.kind == ChangeKind.GRAPH_IO]
    assert notes == ["added initializer 'y_scale' (ones)"]


def test_a_weight_with_leading_ones_is_stored_as_one_row(tmp_path: Path) -> None:
    row = WEIGHT.reshape(1, 1, 8)
    expected = _model(_simplified("x, row"), row=WEIGHT)
    result = _rewrite(tmp_path, ORT, _model(ZOO, weight=row), expected)
    notes = [change.reason for change in result.changes if change.kind == ChangeKind.GRAPH_IO]
    assert notes == ["added initializer 'y_scale' (the weight as one row)"]


def test_a_mul_by_something_else_stays_after_the_norm(tmp_path: Path) -> None:
    inputs = "float[2,4,8] x, float[2,4,8] gate"
    before = _model(_edit(ZOO, "Mul(n, weight)", "Mul(n, gate)"), inputs=inputs)
    norm = _simplified("x, ones", output="n")
    expected = _model(f"{norm}\n y = Mul(n, gate)", inputs=inputs, ones=np.ones(8, np.float32))
    _rewrite(tmp_path, ORT, before, expected)


@pytest.mark.parametrize("config", [ORT, FuseRmsNormConfig()], ids=["ort", "no-target"])
def test_from_opset_23_it_is_onnx_rms_normalization(
    tmp_path: Path, config: FuseRmsNormConfig
) -> None:
    body = _edit(ZOO, "ReduceMean <axes = [-1]> (sq)", "ReduceMean(sq, axes)")
    fused = "y = RMSNormalization <axis = -1, epsilon = 1e-05, stash_type = 1> (x, weight)"
    _rewrite(tmp_path, config, _model(body, 23), _model(fused, 23))


def _skip_fused(outputs: str) -> str:
    op = "com.microsoft.SkipSimplifiedLayerNormalization"
    return f"{outputs} = {op} <epsilon = 1e-05> (a, b, weight)"


def test_a_residual_read_further_on_is_the_fourth_output(tmp_path: Path) -> None:
    inputs = "float[2,4,8] a, float[2,4,8] b"
    outputs = "float[2,4,8] y, float[2,4,8] z"
    before = _model(f"{RESIDUAL}\n z = Add(x, y)", inputs=inputs, outputs=outputs)
    expected = _model(
        f"{_skip_fused('y, , , x')}\n z = Add(x, y)",
        inputs=inputs,
        outputs=outputs,
        microsoft=True,
    )
    result = _rewrite(tmp_path, ORT, before, expected)
    reason = "8 nodes add the residual 'x' (kept as its sum output) and compute its RMSNorm"
    assert {change.rule for change in result.changes} == {"skip-rms-norm"}
    assert reason in {change.reason for change in result.changes}


def test_a_residual_read_by_the_norm_alone_is_one_output(tmp_path: Path) -> None:
    inputs = "float[2,4,8] a, float[2,4,8] b"
    expected = _model(_skip_fused("y"), inputs=inputs, microsoft=True)
    _rewrite(tmp_path, ORT, _model(RESIDUAL, inputs=inputs), expected)


def test_a_residual_that_is_a_graph_output_keeps_its_name(tmp_path: Path) -> None:
    inputs, outputs = "float[4,8] a, float[4,8] b", "float[4,8] y, float[4,8] x"
    before = _model(RESIDUAL, inputs=inputs, outputs=outputs)
    expected = _model(_skip_fused("y, , , x"), inputs=inputs, outputs=outputs, microsoft=True)
    _rewrite(tmp_path, ORT, before, expected)


@pytest.mark.parametrize(
    "inputs",
    ["float[2,4,8] a, float[4,8] b", "float[1,2,4,8] a, float[1,2,4,8] b"],
    ids=["broadcast-skip", "4-d"],
)
def test_an_add_the_skip_kernel_does_not_take_stays(tmp_path: Path, inputs: str) -> None:
    output = "float[1,2,4,8] y" if "1,2" in inputs else "float[2,4,8] y"
    before = _model(RESIDUAL, inputs=inputs, outputs=output)
    expected = _model(f"x = Add(a, b)\n {_simplified()}", inputs=inputs, outputs=output)
    result = _rewrite(tmp_path, ORT, before, expected)
    assert {change.rule for change in result.changes} == {"rms-norm"}


def test_a_reader_of_the_residual_inside_the_norm_keeps_the_add(tmp_path: Path) -> None:
    """Skip-fusing would define the sum after a node that reads it."""
    inputs, outputs = "float[2,4,8] a, float[2,4,8] b", "float[2,4,8] y, float[2,4,8] z"
    body = _edit(RESIDUAL, "r = Reciprocal(sd)", "z = Relu(x)\n r = Reciprocal(sd)")
    before = _model(body, inputs=inputs, outputs=outputs)
    expected = _model(
        f"x = Add(a, b)\n z = Relu(x)\n {_simplified()}", inputs=inputs, outputs=outputs
    )
    _rewrite(tmp_path, ORT, before, expected)


def test_idempotent(tmp_path: Path) -> None:
    model = load_text(tmp_path, _model(RESIDUAL, inputs="float[2,4,8] a, float[2,4,8] b"))
    assert FuseRmsNorm(ORT)(model).modified
    again = FuseRmsNorm(ORT)(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def _reasons(tmp_path: Path, before: str, config: FuseRmsNormConfig = ORT) -> set[tuple[str, str]]:
    """(rule, reason) of each skip the pass records on `before`, which it leaves unchanged."""
    return {(skip.rule, skip.reason) for skip in check_skip(tmp_path, FuseRmsNorm(config), before)}


def _both_rules(reason: str) -> set[tuple[str, str]]:
    return {("skip-rms-norm", f"{ZOO_NODES}{reason}"), ("rms-norm", f"{ZOO_NODES}{reason}")}


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (
            "ReduceMean <axes = [-1]> (sq)",
            "ReduceMean <axes = [-1], keepdims = 0> (sq)",
            "ReduceMean 'var' drops the reduced axis",
        ),
        (
            "ReduceMean <axes = [-1]> (sq)",
            "ReduceMean <axes = [1]> (sq)",
            "ReduceMean 'var' averages axes [1], not the last axis",
        ),
        (
            "ReduceMean <axes = [-1]> (sq)",
            "ReduceMean(sq)",
            "ReduceMean 'var' averages axes all, not the last axis",
        ),
        ("Pow(x, two)", "Pow(x, one)", "Pow exponent 'one' is 1, not 2"),
    ],
)
def test_reductions_and_constants_that_do_not_fit_are_skips(
    tmp_path: Path, old: str, new: str, reason: str
) -> None:
    assert _reasons(tmp_path, _model(_edit(ZOO, old, new))) == _both_rules(reason)


def test_a_numerator_other_than_one_is_a_skip(tmp_path: Path) -> None:
    before = _model(_edit(HUGGING_FACE, "Div(one, sd)", "Div(two, sd)"))
    reason = "Pow+ReduceMean+Add+Sqrt+Div+Mul not fused: Div numerator 'two' is 2, not 1"
    assert _reasons(tmp_path, before) == {("skip-rms-norm", reason), ("rms-norm", reason)}


def test_computed_axes_are_a_skip(tmp_path: Path) -> None:
    body = "computed = Identity(axes)\n" + _edit(ZOO_18, "(sq, axes)", "(sq, computed)")
    assert _reasons(tmp_path, _model(body, 18)) == _both_rules(
        "ReduceMean axes 'computed' are not constant"
    )


def test_epsilon_must_be_one_constant_element(tmp_path: Path) -> None:
    wide = _model(ZOO, eps=np.full(8, 1e-5, np.float32))
    assert _reasons(tmp_path / "wide", wide) == _both_rules(
        "Add epsilon 'eps' has shape [8], not one element"
    )
    given = _model(ZOO, inputs="float[2,4,8] x, float eps")
    assert _reasons(tmp_path / "input", given) == _both_rules("Add epsilon 'eps' is a graph input")


def test_shapes_and_types_that_do_not_fit_are_skips(tmp_path: Path) -> None:
    dynamic = _model(ZOO, inputs="float[2,4,hidden] x", outputs="float[2,4,hidden] y")
    assert _reasons(tmp_path / "dynamic", dynamic) == _both_rules(
        "the last axis of 'x' has no static size"
    )
    half = {name: array.astype(np.float16) for name, array in WEIGHTS.items() if name != "axes"}
    text = _model(ZOO, inputs="float16[2,4,8] x", outputs="float16[2,4,8] y", **half)
    declared = "target 'onnxruntime' declares {} for float32, not float16"
    assert _reasons(tmp_path / "half", text) == {
        ("skip-rms-norm", ZOO_NODES + declared.format(SKIP_OP)),
        ("rms-norm", ZOO_NODES + declared.format("SimplifiedLayerNormalization")),
    }


SKIP_INPUTS = "float[2,4,8] a, float[2,4,8] b"


@pytest.mark.parametrize(
    ("body", "inputs", "outputs", "reason"),
    [
        (ZOO, "float[2,4,8] x", "float[2,4,8] y", "'x' is not computed by an Add in this graph"),
        (
            RESIDUAL,
            "float[1,2,4,8] a, float[1,2,4,8] b",
            "float[1,2,4,8] y",
            "the residual sum 'x' is not known to be 2-D or 3-D",
        ),
        (
            RESIDUAL,
            "float[2,4,8] a, float[4,8] b",
            "float[2,4,8] y",
            "the inputs of Add 'x' do not both have its shape [2,4,8]",
        ),
        (
            _edit(RESIDUAL, "r = Reciprocal(sd)", "z = Relu(x)\n r = Reciprocal(sd)"),
            SKIP_INPUTS,
            "float[2,4,8] y, float[2,4,8] z",
            "node n5 (Relu) reads the residual sum 'x' before the norm ends",
        ),
    ],
    ids=["no-add", "4-d", "broadcast", "read-inside"],
)
def test_what_the_skip_rule_does_not_take_is_a_skip_where_it_alone_is_declared(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    inputs: str,
    outputs: str,
    reason: str,
) -> None:
    """Where the plain op is declared these sites get it (see the tests above); with only the
    skip op declared, the skip rule's own reason is what the audit shows."""
    skip_only = FusedOp("SkipSimplifiedLayerNormalization", "com.microsoft")
    declared = Capabilities(None, frozenset({"float32"}), fused_ops=(skip_only,))
    monkeypatch.setattr(target_capabilities, "capabilities_of", lambda name: declared)
    reasons = _reasons(tmp_path, _model(body, inputs=inputs, outputs=outputs))
    assert ("skip-rms-norm", f"{ZOO_NODES}{reason}") in reasons


def test_an_intermediate_value_read_elsewhere_is_a_skip(tmp_path: Path) -> None:
    before = _model(f"{ZOO}\n z = Relu(sd)", outputs="float[2,4,8] y, float[2,4,8] z")
    assert _reasons(tmp_path, before) == _both_rules("Sqrt output has 2 consumers")


def test_without_a_target_below_opset_23_every_site_is_a_skip(tmp_path: Path) -> None:
    no_target = "and no target is given (target=NAME)"
    assert _reasons(tmp_path, _model(ZOO), FuseRmsNormConfig()) == {
        (
            "skip-rms-norm",
            f"{ZOO_NODES}com.microsoft.SkipSimplifiedLayerNormalization is not a standard ONNX "
            f"op {no_target}",
        ),
        (
            "rms-norm",
            f"{ZOO_NODES}ONNX defines no RMSNormalization at opset 17 {no_target}; ONNX defines "
            f"no SimplifiedLayerNormalization at opset 17 {no_target}",
        ),
    }


def test_a_target_declaring_neither_op_is_a_skip(tmp_path: Path) -> None:
    declares_no = "target 'reference' declares no"
    assert _reasons(tmp_path, _model(ZOO), FuseRmsNormConfig(target="reference")) == {
        (
            "skip-rms-norm",
            f"{ZOO_NODES}{declares_no} com.microsoft.SkipSimplifiedLayerNormalization at opset 17",
        ),
        (
            "rms-norm",
            f"{ZOO_NODES}{declares_no} RMSNormalization at opset 17; {declares_no} "
            "SimplifiedLayerNormalization at opset 17",
        ),
    }


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ReduceMean <axes = [-1]> (sq)", "ReduceMax <axes = [-1]> (sq)"),
        ("Add(var, eps)", "Mul(var, eps)"),
        ("Reciprocal(sd)", "Neg(sd)"),
    ],
)
def test_another_structure_is_no_site(tmp_path: Path, old: str, new: str) -> None:
    assert _reasons(tmp_path, _model(_edit(ZOO, old, new))) == set()


# The small decoder: 2 layers, each with an input norm and a post-attention norm, then the final
# norm (7 nodes each). The first reads the embedding Gather (SimplifiedLayerNormalization, or
# RMSNormalization from opset 23); the other four read a residual Add, which each
# SkipSimplifiedLayerNormalization takes as well.
NODES_BEFORE, NODES_AFTER = 243, 243 - 6 - 4 * 7
PLAIN_OP = {17: "SimplifiedLayerNormalization", 23: "RMSNormalization"}


@pytest.fixture(scope="module", params=sorted(PLAIN_OP))
def decoders(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[oir.Model, oir.Model]:
    """The small decoder at an opset, as built, and fused."""
    path = tmp_path_factory.mktemp("decoder") / "small.onnx"
    config = SMALL_DECODER
    onnx.save(build_decoder(config, seeded_weights(config), opset=request.param), path)
    fused = load_model(path)
    assert FuseRmsNorm(ORT)(fused).skipped == ()
    return load_model(path), fused


def test_the_small_decoder_loses_34_nodes(decoders: tuple[oir.Model, oir.Model]) -> None:
    unfused, fused = decoders
    assert (len(unfused.graph), len(fused.graph)) == (NODES_BEFORE, NODES_AFTER)
    counts = collections.Counter(node.op_type for node in fused.graph)
    assert counts[PLAIN_OP[fused.opset_imports[""]]] == 1
    assert counts["SkipSimplifiedLayerNormalization"] == 4
    assert (counts["Pow"], counts["Sqrt"], counts["Reciprocal"]) == (0, 0, 0)
    assert verify(fused) == []


def test_the_fused_decoder_gives_the_same_logits_and_tokens(
    decoders: tuple[oir.Model, oir.Model],
) -> None:
    unfused, fused = decoders
    prompt = left_padded([[5, 17, 3, 42, 8], [9, 4, 33]], pad_id=0)
    feeds = {
        "input_ids": prompt.ids,
        "attention_mask": prompt.mask,
        "position_ids": np.maximum(np.cumsum(prompt.mask, axis=1) - 1, 0),
        **{name: np.zeros((2, 2, 0, 8), np.float32) for name in _past_names(unfused)},
    }
    want, got = (reference_session(model).run(["logits"], feeds)[0] for model in decoders)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert _greedy(fused, prompt) == _greedy(unfused, prompt)


def _past_names(model: oir.Model) -> list[str]:
    return [value.name for value in model.graph.inputs if value.name.startswith("past")]


def _greedy(model: oir.Model, prompt: PromptBatch) -> list[list[int]]:
    executable = compile_model(get_target("onnxruntime"), model)
    assert executable.plan.whole_on_target  # onnxruntime runs every fused node itself
    signature = decoder_signature(model, "small decoder")
    generator = SessionGenerator(executable.session(2), executable.output_names, signature)
    steps = np.concatenate(list(generator.generate(prompt, 6)), axis=1)
    return steps.tolist()


@pytest.mark.slow
def test_smollm2_logits_agree(tmp_path: Path) -> None:
    """The real model: 61 norms, 60 after a residual Add; the prompt's logits agree."""
    from zoo.resolve import resolve_model

    path = resolve_model("smollm2-135m")
    unfused, fused = load_model(path), load_model(path)
    result = FuseRmsNorm(ORT)(fused)
    counts = collections.Counter(node.op_type for node in fused.graph)
    assert (counts["SimplifiedLayerNormalization"], counts["SkipSimplifiedLayerNormalization"]) == (
        1,
        60,
    )
    assert result.skipped == () and len(unfused.graph) - len(fused.graph) == 6 + 60 * 7
    ids = np.array([[1, 9690, 28, 253, 1345, 314, 2367, 30]], np.int64)
    feeds = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "position_ids": np.arange(ids.shape[1])[None],
        **{name: np.zeros((1, 3, 0, 64), np.float32) for name in _past_names(unfused)},
    }
    want, got = (reference_session(model).run(["logits"], feeds)[0] for model in (unfused, fused))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
    assert (got[0].argmax(-1) == want[0].argmax(-1)).all()
