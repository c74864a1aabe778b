"""recognize-layernorm: decomposed LayerNorm, each way exporters spell it, becomes
LayerNormalization (the graph before and the graph expected after, with the same outputs);
every skip says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bert_like import assert_close, bert_like_feeds, build_bert_like, load, outputs_of
from rewrite_cases import assert_same_graph, check_skip, load_text

from ir.verifier import verify
from passes.audit import ChangeKind
from passes.base import PassResult
from passes.contract_check import check_contracts
from passes.fusion.recognize_layernorm import RecognizeLayerNorm, RecognizeLayerNormConfig
from passes.pipeline import PipelineError, parse_pipeline

# onnxruntime declares default-domain LayerNormalization below opset 17 too.
ORT = RecognizeLayerNormConfig(target="onnxruntime")
RNG = np.random.default_rng(0)
GAMMA = RNG.standard_normal(8).astype(np.float32)
BETA = RNG.standard_normal(8).astype(np.float32)
WEIGHTS = {
    "two": np.array(2.0, np.float32),
    "eps": np.array(1e-5, np.float32),
    "gamma": GAMMA,
    "beta": BETA,
    "axes": np.array([-1]),
}
CENTER = "mu = ReduceMean <axes = [-1]> (x)\n d = Sub(x, mu)"
VARIANCE = "var = ReduceMean <axes = [-1]> (sq)\n ve = Add(var, eps)\n sd = Sqrt(ve)"
NORMALIZE = f"{CENTER}\n sq = Pow(d, two)\n {VARIANCE}\n n = Div(d, sd)"
# As torch exports it: Pow 2, Div, Mul gamma, Add beta.
TORCH = f"{NORMALIZE}\n g = Mul(n, gamma)\n y = Add(g, beta)"


def _edit(body: str, old: str, new: str) -> str:
    """`body` with every `old` replaced by `new` (there must be one)."""
    assert old in body, f"{old!r} is not in the body"
    return body.replace(old, new)


# From opset 18 the axes are an input.
TORCH_18 = _edit(
    _edit(TORCH, "ReduceMean <axes = [-1]> (x)", "ReduceMean(x, axes)"),
    "ReduceMean <axes = [-1]> (sq)",
    "ReduceMean(sq, axes)",
)
# d * d, eps + var, Reciprocal then Mul, no gamma or beta.
RECIPROCAL = (
    "mu = ReduceMean <axes = [2]> (x)\n d = Sub(x, mu)\n sq = Mul(d, d)\n"
    "var = ReduceMean <axes = [-1]> (sq)\n ve = Add(eps, var)\n sd = Sqrt(ve)\n"
    "r = Reciprocal(sd)\n y = Mul(r, d)"
)
# How skip reasons name the nodes of a site: in pattern order, the root last.
TORCH_NODES = "ReduceMean+Sub+Pow+ReduceMean+Add+Sqrt+Div not fused: "
RECIPROCAL_NODES = "ReduceMean+Sub+Mul+ReduceMean+Add+Sqrt+Reciprocal+Mul not fused: "


def _tensor(name: str, array: np.ndarray) -> str:
    kind = "float" if array.dtype == np.float32 else "int64"
    dims = f"[{','.join(map(str, array.shape))}]" if array.ndim else ""
    values = ", ".join(repr(value) for value in array.ravel().tolist())
    return f"{kind}{dims} {name} = {{{values}}}"


def _model(
    body: str,
    opset: int = 14,
    *,
    inputs: str = "float[2,4,8] x",
    outputs: str = "float[2,4,8] y",
    **changed: np.ndarray,
) -> str:
    """ONNX text of a graph computing `body` with the LayerNorm constants as initializers,
    except those declared as graph `inputs` (those nothing reads drop out of the comparison)."""
    given = {declared.split()[-1] for declared in inputs.split(",")}
    constants = {**WEIGHTS, **changed}
    weights = ", ".join(_tensor(name, constants[name]) for name in constants.keys() - given)
    return f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g ({inputs}) => ({outputs}) <{weights}>
        {{
            {body}
        }}
    """


def _fused(inputs: str = "x, gamma, beta", axis: int = -1) -> str:
    return f"y = LayerNormalization <axis = {axis}, epsilon = 1e-05> ({inputs})"


def _rewrite(
    tmp_path: Path, config: RecognizeLayerNormConfig, before: str, expected: str
) -> PassResult:
    """Run the pass on `before`: the graph is `expected` and computes the same outputs."""
    model = load_text(tmp_path / "before", before)
    want = outputs_of(model)
    result = RecognizeLayerNorm(config)(model)
    assert result.modified and result.skipped == ()
    assert_same_graph(model, load_text(tmp_path / "expected", expected))
    assert verify(model) == []
    assert_close(want, outputs_of(model))
    return result


@pytest.mark.parametrize(
    ("body", "opset", "config"),
    [
        (TORCH, 11, ORT),
        (TORCH, 14, ORT),
        (TORCH, 17, RecognizeLayerNormConfig()),
        (TORCH_18, 18, RecognizeLayerNormConfig()),
        (TORCH_18, 20, ORT),
    ],
    ids=["opset11-ort", "opset14-ort", "opset17", "opset18-axes-input", "opset20-ort"],
)
def test_the_torch_form_reuses_gamma_and_beta(
    tmp_path: Path, body: str, opset: int, config: RecognizeLayerNormConfig
) -> None:
    result = _rewrite(tmp_path, config, _model(body, opset), _model(_fused(), opset))
    reason = "9 nodes normalize 'x' over its last axis"
    assert {(change.rule, change.reason) for change in result.changes} == {("layernorm", reason)}
    (added,) = [change for change in result.changes if change.kind == ChangeKind.ADDED_NODE]
    assert added.replaces == tuple(f"n{index}" for index in range(9))


def test_the_reciprocal_form_without_gamma_and_beta_gets_ones_and_zeros(tmp_path: Path) -> None:
    ones, zeros = np.ones(8, np.float32), np.zeros(8, np.float32)
    expected = _model(_fused("x, ones, zeros"), ones=ones, zeros=zeros)
    result = _rewrite(tmp_path, ORT, _model(RECIPROCAL), expected)
    notes = [change.reason for change in result.changes if change.kind == ChangeKind.GRAPH_IO]
    assert notes == ["added initializer 'y_scale' (scale)", "added initializer 'y_bias' (bias)"]


def test_gamma_alone(tmp_path: Path) -> None:
    before = _model(f"{NORMALIZE}\n y = Mul(gamma, n)")
    expected = _model(_fused("x, gamma, zeros"), zeros=np.zeros(8, np.float32))
    _rewrite(tmp_path, ORT, before, expected)


def test_beta_alone(tmp_path: Path) -> None:
    before = _model(f"{NORMALIZE}\n y = Add(beta, n)")
    expected = _model(_fused("x, ones, beta"), ones=np.ones(8, np.float32))
    _rewrite(tmp_path, ORT, before, expected)


def test_two_trailing_axes_with_broadcast_gamma_and_beta(tmp_path: Path) -> None:
    gamma = RNG.standard_normal((1, 4, 8)).astype(np.float32)  # the leading 1 broadcasts
    before = _model(TORCH_18, 18, axes=np.array([1, 2]), gamma=gamma)
    scale, bias = gamma[0], np.broadcast_to(BETA, (4, 8)).copy()
    expected = _model(_fused("x, scale, bias", axis=-2), 18, scale=scale, bias=bias)
    _rewrite(tmp_path, ORT, before, expected)


def test_all_axes_of_known_rank(tmp_path: Path) -> None:
    body = _edit(TORCH, "ReduceMean <axes = [-1]>", "ReduceMean")
    gamma = RNG.standard_normal((2, 4, 8)).astype(np.float32)
    bias = np.broadcast_to(BETA, (2, 4, 8)).copy()
    expected = _model(_fused("x, gamma, bias", axis=-3), gamma=gamma, bias=bias)
    _rewrite(tmp_path, ORT, _model(body, gamma=gamma), expected)


def test_a_residual_add_after_the_scale_stays(tmp_path: Path) -> None:
    inputs = "float[2,4,8] x, float[2,4,8] skip"
    before = _model(_edit(TORCH, "Add(g, beta)", "Add(g, skip)"), inputs=inputs)
    fused = _edit(_fused("x, gamma, zeros"), "y =", "ln =")
    expected = _model(f"{fused}\n y = Add(ln, skip)", inputs=inputs, zeros=np.zeros(8, np.float32))
    _rewrite(tmp_path, ORT, before, expected)


def test_a_target_declaring_it_below_opset_17_receives_it(tmp_path: Path) -> None:
    config = RecognizeLayerNormConfig(target="tvm")
    _rewrite(tmp_path, config, _model(TORCH), _model(_fused()))


def test_idempotent(tmp_path: Path) -> None:
    model = load_text(tmp_path, _model(TORCH))
    assert RecognizeLayerNorm(ORT)(model).modified
    again = RecognizeLayerNorm(ORT)(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def _reason(tmp_path: Path, before: str, config: RecognizeLayerNormConfig = ORT) -> str:
    (skip,) = check_skip(tmp_path, RecognizeLayerNorm(config), before)
    return skip.reason


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (
            "mu = ReduceMean <axes = [-1]> (x)",
            "mu = ReduceMean <axes = [-1], keepdims = 0> (x)",
            "ReduceMean 'mu' drops the reduced axes",
        ),
        ("Pow(d, two)", "Pow(d, eps)", "Pow exponent 'eps' is 1e-05, not 2"),
        (
            "mu = ReduceMean <axes = [-1]> (x)",
            "mu = ReduceMean <axes = [1]> (x)",
            "ReduceMean averages axes (-2,), not the last axes",
        ),
        (
            "var = ReduceMean <axes = [-1]> (sq)",
            "var = ReduceMean <axes = [-2, -1]> (sq)",
            "the mean and the variance reduce different axes",
        ),
    ],
)
def test_reductions_and_constants_that_do_not_fit_are_skips(
    tmp_path: Path, old: str, new: str, reason: str
) -> None:
    assert _reason(tmp_path, _model(_edit(TORCH, old, new))) == f"{TORCH_NODES}{reason}"


def test_no_axes_is_a_skip(tmp_path: Path) -> None:
    body = _edit(TORCH_18, "ReduceMean(x, axes)", "ReduceMean <noop_with_empty_axes = 1> (x)")
    assert _reason(tmp_path, _model(body, 18)) == (
        f"{TORCH_NODES}ReduceMean reduces no axes or all axes of unknown rank"
    )


def test_computed_axes_are_a_skip(tmp_path: Path) -> None:
    body = "computed = Identity(axes)\n" + _edit(TORCH_18, "(x, axes)", "(x, computed)")
    assert _reason(tmp_path, _model(body, 18)) == (
        f"{TORCH_NODES}ReduceMean axes 'computed' are not constant"
    )


def test_epsilon_must_be_one_constant_element(tmp_path: Path) -> None:
    wide = _model(TORCH, eps=np.full(8, 1e-5, np.float32))
    assert _reason(tmp_path / "wide", wide) == (
        f"{TORCH_NODES}Add epsilon 'eps' has shape [8], not one element"
    )
    given = _model(TORCH, inputs="float[2,4,8] x, float eps")
    assert _reason(tmp_path / "input", given) == f"{TORCH_NODES}Add epsilon 'eps' is a graph input"


@pytest.mark.parametrize(
    ("before", "reason"),
    [
        (
            _model(TORCH, inputs="float[2,4,8] x, float[8] gamma"),
            f"{TORCH_NODES}scale 'gamma' is a graph input",
        ),
        (
            _model(TORCH, gamma=np.ones((4, 8), np.float32)),
            f"{TORCH_NODES}the scale does not match the normalized shape (8,)",
        ),
        (
            _model(TORCH, outputs="float[2,4,8] y, float[2,4,8] n"),
            f"{TORCH_NODES}intermediate value 'n' is a graph output",
        ),
        (
            _model(RECIPROCAL, inputs="float[2,4,hidden] x"),
            f"{RECIPROCAL_NODES}the normalized axes of 'x' have no static size",
        ),
    ],
    ids=["scale-input", "scale-leading-axes", "normalized-output", "dynamic-size"],
)
def test_scale_bias_and_shape_that_do_not_fit_are_skips(
    tmp_path: Path, before: str, reason: str
) -> None:
    assert _reason(tmp_path, before) == reason


def test_an_intermediate_value_read_elsewhere_is_a_skip(tmp_path: Path) -> None:
    before = _model(f"{TORCH}\n z = Relu(sd)", outputs="float[2,4,8] y, float[2,4,8] z")
    assert _reason(tmp_path, before) == f"{TORCH_NODES}Sqrt output has 2 consumers"


def test_no_target_below_opset_17_is_a_skip(tmp_path: Path) -> None:
    assert _reason(tmp_path, _model(TORCH), RecognizeLayerNormConfig()) == (
        f"{TORCH_NODES}ONNX defines no LayerNormalization at opset 14 and no target is given "
        "(target=NAME)"
    )


def test_a_target_without_the_declaration_below_opset_17_is_a_skip(tmp_path: Path) -> None:
    config = RecognizeLayerNormConfig(target="reference")
    assert _reason(tmp_path, _model(TORCH), config) == (
        f"{TORCH_NODES}target 'reference' declares no LayerNormalization at opset 14"
    )
    _rewrite(tmp_path / "17", config, _model(TORCH, 17), _model(_fused(), 17))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ReduceMean <axes = [-1]> (sq)", "ReduceMax <axes = [-1]> (sq)"),
        ("Add(var, eps)", "Mul(var, eps)"),
        ("Div(d, sd)", "Div(sd, d)"),
    ],
)
def test_another_structure_is_no_site(tmp_path: Path, old: str, new: str) -> None:
    before = _model(_edit(TORCH, old, new))
    assert check_skip(tmp_path, RecognizeLayerNorm(ORT), before) == ()


def test_an_unknown_target_is_refused_when_configured() -> None:
    with pytest.raises(ValueError, match=r"^unknown target 'no-runtime' \(known: .*onnxruntime"):
        RecognizeLayerNormConfig(target="no-runtime")
    with pytest.raises(PipelineError, match=r"^pass 'recognize-layernorm': unknown target"):
        parse_pipeline("recognize-layernorm{target=no-runtime}")


def test_constants_to_fold_need_fold_constants_first(tmp_path: Path) -> None:
    """An epsilon computed from constants would be a skip: the pipeline is refused with the
    fix."""
    body = "e = Identity(eps)\n" + _edit(TORCH, "Add(var, eps)", "Add(var, e)")
    model = load_text(tmp_path, _model(body))
    with pytest.raises(PipelineError, match="needs constant weights: run 'fold-constants'"):
        check_contracts(parse_pipeline("recognize-layernorm"), model)
    check_contracts(parse_pipeline("fold-constants,recognize-layernorm"), model)


@pytest.mark.parametrize("opset", [14, 20])
def test_bert_like(tmp_path: Path, opset: int) -> None:
    model = load(build_bert_like(opset), tmp_path)
    feeds = bert_like_feeds()
    before = outputs_of(model, feeds)
    result = RecognizeLayerNorm(ORT)(model)
    ops = [node.op_type for node in model.graph]
    assert ops.count("LayerNormalization") == 5  # embeddings + 2 per layer
    assert "ReduceMean" not in ops
    assert result.skipped == ()
    assert model.graph.outputs[0].name == "last_hidden_state"
    assert verify(model) == []
    assert_close(before, outputs_of(model, feeds))
