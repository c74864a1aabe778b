"""recognize-gelu: every grouping and spelling of erf and tanh GELU becomes one op (the graph
before and the graph expected after, with the same outputs); every skip says why."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bert_like import assert_close, bert_like_feeds, build_bert_like, load, outputs_of
from rewrite_cases import assert_same_graph, check_skip, load_text

from ir.capabilities import Capabilities, FusedOp
from ir.verifier import verify
from passes import target_capabilities
from passes.audit import Change, ChangeKind
from passes.contract_check import check_contracts
from passes.fusion.recognize_gelu import RecognizeGelu, RecognizeGeluConfig
from passes.pipeline import PipelineError, parse_pipeline

# onnxruntime declares com.microsoft Gelu and FastGelu, for models below opset 20.
ORT = RecognizeGeluConfig(target="onnxruntime")
CONSTANTS = {
    "root2": math.sqrt(2.0),
    "inv_root2": math.sqrt(0.5),
    "one": 1.0,
    "half": 0.5,
    "three": 3.0,
    "cubic": 0.044715,
    "k": math.sqrt(2.0 / math.pi),
}
ERF = "s = Div(x, root2)\n e = Erf(s)\n a = Add(e, one)"  # 1 + erf(x / sqrt2) as a
TANH_POW = "p = Pow(x, three)\n c = Mul(cubic, p)\n i = Add(x, c)\n s = Mul(i, k)\n t = Tanh(s)"
# Each rule's grouping of x * 0.5 * (1 + f), with the other spellings of f's argument.
SPELLINGS = {
    "erf (x*0.5)*a": f"{ERF}\n h = Mul(x, half)\n y = Mul(h, a)",
    "erf (x*a)*0.5, x*(1/sqrt2)": (
        "s = Mul(inv_root2, x)\n e = Erf(s)\n a = Add(one, e)\n m = Mul(x, a)\n y = Mul(m, half)"
    ),
    "erf (a*0.5)*x": f"{ERF}\n m = Mul(half, a)\n y = Mul(x, m)",
    "tanh (0.5*x)*a, Pow(x,3)": f"{TANH_POW}\n a = Add(one, t)\n h = Mul(half, x)\n y = Mul(h, a)",
    "tanh (x*a)*0.5, (x*x)*x": (
        "q = Mul(x, x)\n p = Mul(q, x)\n c = Mul(p, cubic)\n i = Add(c, x)\n s = Mul(k, i)\n"
        "t = Tanh(s)\n a = Add(t, one)\n m = Mul(x, a)\n y = Mul(half, m)"
    ),
    "tanh (a*0.5)*x, x*(x*x)": (
        "q = Mul(x, x)\n p = Mul(x, q)\n c = Mul(p, cubic)\n i = Add(x, c)\n s = Mul(i, k)\n"
        "t = Tanh(s)\n a = Add(t, one)\n m = Mul(a, half)\n y = Mul(m, x)"
    ),
}


def _model(
    body: str,
    opset: int = 14,
    *,
    outputs: str = "float[2,8] y",
    inputs: str = "float[2,8] x",
    microsoft: bool = False,
    **changed: float,
) -> str:
    """ONNX text of a graph computing `body` with the GELU constants as initializers (those
    nothing reads drop out of the comparison)."""
    weights = ", ".join(
        f"float {name} = {{{value!r}}}" for name, value in {**CONSTANTS, **changed}.items()
    )
    imports = f'"" : {opset}' + (', "com.microsoft" : 1' if microsoft else "")
    return f"""
        <ir_version: 8, opset_import: [{imports}]>
        g ({inputs}) => ({outputs}) <{weights}>
        {{
            {body}
        }}
    """


def _rewrite(tmp_path: Path, config: RecognizeGeluConfig, before: str, expected: str) -> None:
    """Run the pass on `before`: the graph is `expected` and computes the same outputs."""
    model = load_text(tmp_path / "before", before)
    want = outputs_of(model)
    assert RecognizeGelu(config)(model).modified
    assert_same_graph(model, load_text(tmp_path / "expected", expected))
    assert verify(model) == []
    assert_close(want, outputs_of(model))


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_each_rule_becomes_the_contrib_op_for_a_target_that_declares_it(
    tmp_path: Path, spelling: str
) -> None:
    op = "Gelu" if spelling.startswith("erf") else "FastGelu"
    expected = _model(f"y = com.microsoft.{op}(x)", microsoft=True)
    _rewrite(tmp_path, ORT, _model(SPELLINGS[spelling]), expected)


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@pytest.mark.parametrize("config", [RecognizeGeluConfig(), ORT], ids=["no-target", "ort"])
def test_each_rule_becomes_onnx_gelu_at_opset_20(
    tmp_path: Path, spelling: str, config: RecognizeGeluConfig
) -> None:
    approximate = "none" if spelling.startswith("erf") else "tanh"
    expected = _model(f'y = Gelu <approximate = "{approximate}"> (x)', 20)
    _rewrite(tmp_path, config, _model(SPELLINGS[spelling], 20), expected)


def test_the_audit_records_the_op_replacing_every_node(tmp_path: Path) -> None:
    model = load_text(tmp_path, _model(SPELLINGS["erf (a*0.5)*x"]))
    result = RecognizeGelu(ORT)(model)
    reason = "5 nodes compute the erf GELU of 'x'"
    matched = ("n0", "n1", "n2", "n3", "n4")
    assert result.changes == (
        Change(ChangeKind.GRAPH_IO, (), "gelu-erf", "imported opset com.microsoft 1"),
        Change(ChangeKind.ADDED_NODE, ("n5",), "gelu-erf", reason, replaces=matched),
        *(Change(ChangeKind.REMOVED_NODE, (node,), "gelu-erf", reason) for node in matched),
    )
    assert result.skipped == ()


def test_idempotent(tmp_path: Path) -> None:
    model = load_text(tmp_path, _model(SPELLINGS["erf (x*0.5)*a"]))
    assert RecognizeGelu(ORT)(model).modified
    again = RecognizeGelu(ORT)(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def test_the_op_feeds_the_old_readers(tmp_path: Path) -> None:
    before = _model(
        SPELLINGS["tanh (0.5*x)*a, Pow(x,3)"] + "\n r = Relu(y)", outputs="float[2,8] r"
    )
    expected = _model(
        "g = com.microsoft.FastGelu(x)\n r = Relu(g)", outputs="float[2,8] r", microsoft=True
    )
    _rewrite(tmp_path, ORT, before, expected)


def _reason(tmp_path: Path, before: str, config: RecognizeGeluConfig = ORT) -> str:
    (skip,) = check_skip(tmp_path, RecognizeGelu(config), before)
    return skip.reason


# How skip reasons name the nodes of a site: in pattern order, the root last.
ERF_NODES = "Div+Erf+Add+Mul+Mul not fused: "  # erf (a*0.5)*x
ERF_HALF_FIRST = "Mul+Div+Erf+Add+Mul not fused: "  # erf (x*0.5)*a
ERF_BY_FACTOR = "Mul+Erf+Add+Mul+Mul not fused: "
TANH_NODES = "Mul+Pow+Mul+Add+Mul+Tanh+Add+Mul not fused: "


@pytest.mark.parametrize(
    ("spelling", "constant", "value", "reason"),
    [
        ("erf (x*0.5)*a", "root2", 1.5, f"{ERF_HALF_FIRST}Div divisor 'root2' is 1.5, not 1.41421"),
        (
            "erf (x*a)*0.5, x*(1/sqrt2)",
            "inv_root2",
            0.6,
            f"{ERF_BY_FACTOR}Mul 1/sqrt(2) factor 'inv_root2' is 0.6, not 0.707107",
        ),
        ("erf (a*0.5)*x", "one", 2.0, f"{ERF_NODES}Add constant 'one' is 2, not 1"),
        ("erf (a*0.5)*x", "half", 0.6, f"{ERF_NODES}Mul GELU factor 'half' is 0.6, not 0.5"),
        ("tanh (0.5*x)*a, Pow(x,3)", "three", 2.0, f"{TANH_NODES}Pow exponent 'three' is 2, not 3"),
        (
            "tanh (0.5*x)*a, Pow(x,3)",
            "k",
            0.7,
            f"{TANH_NODES}Mul sqrt(2/pi) factor 'k' is 0.7, not 0.797885",
        ),
        (
            "tanh (0.5*x)*a, Pow(x,3)",
            "cubic",
            0.05,
            f"{TANH_NODES}Mul x^3 coefficient 'cubic' is 0.05, not 0.044715",
        ),
    ],
)
def test_a_constant_off_is_a_skip_naming_it(
    tmp_path: Path, spelling: str, constant: str, value: float, reason: str
) -> None:
    assert _reason(tmp_path, _model(SPELLINGS[spelling], **{constant: value})) == reason


def test_a_computed_divisor_is_a_skip(tmp_path: Path) -> None:
    before = _model(
        SPELLINGS["erf (x*0.5)*a"].replace("root2", "w"), inputs="float[2,8] x, float w"
    )
    assert _reason(tmp_path, before) == f"{ERF_HALF_FIRST}Div divisor 'w' is a graph input"


def test_constants_match_within_the_tolerance(tmp_path: Path) -> None:
    nearly = _model(SPELLINGS["erf (x*0.5)*a"], root2=math.sqrt(2.0) * (1 + 5e-5))
    expected = _model("y = com.microsoft.Gelu(x)", microsoft=True)
    _rewrite(tmp_path / "loose", ORT, nearly, expected)
    strict = RecognizeGeluConfig(target="onnxruntime", tolerance=1e-5)
    reason = f"{ERF_HALF_FIRST}Div divisor 'root2' is 1.41428, not 1.41421"
    assert _reason(tmp_path / "strict", nearly, strict) == reason


def test_an_intermediate_value_read_elsewhere_is_a_skip(tmp_path: Path) -> None:
    before = _model(
        SPELLINGS["erf (x*0.5)*a"] + "\n r = Relu(e)", outputs="float[2,8] y, float[2,8] r"
    )
    assert _reason(tmp_path, before) == f"{ERF_HALF_FIRST}Erf output has 2 consumers"


def test_an_intermediate_graph_output_is_a_skip(tmp_path: Path) -> None:
    before = _model(SPELLINGS["tanh (x*a)*0.5, (x*x)*x"], outputs="float[2,8] y, float[2,8] i")
    assert _reason(tmp_path, before) == (
        "Mul+Mul+Mul+Add+Mul+Tanh+Add+Mul+Mul not fused: Add output is a graph output"
    )


def test_no_target_below_opset_20_is_a_skip(tmp_path: Path) -> None:
    assert _reason(tmp_path, _model(SPELLINGS["erf (x*0.5)*a"]), RecognizeGeluConfig()) == (
        f"{ERF_HALF_FIRST}ONNX defines no Gelu at opset 14 and no target is given (target=NAME); "
        "com.microsoft.Gelu is not a standard ONNX op and no target is given (target=NAME)"
    )


def test_a_target_without_contrib_gelu_below_opset_20_is_a_skip(tmp_path: Path) -> None:
    before = _model(SPELLINGS["tanh (0.5*x)*a, Pow(x,3)"])
    assert _reason(tmp_path, before, RecognizeGeluConfig(target="tvm")) == (
        f"{TANH_NODES}target 'tvm' declares no Gelu at opset 14; "
        "target 'tvm' declares no com.microsoft.FastGelu at opset 14"
    )


@pytest.mark.parametrize(
    "body",
    [
        "e = Erf(x)\n a = Add(e, one)\n m = Mul(x, a)\n y = Mul(m, half)",  # Erf of x itself
        "a = Add(x, one)\n m = Mul(x, a)\n y = Mul(m, half)",  # no Erf
        "y = Tanh(x)",
        "s = Div(x, root2)\n e = Erf(s)\n a = Add(e, one)\n y = Mul(a, a)",  # not times x
    ],
)
def test_another_structure_is_no_site(tmp_path: Path, body: str) -> None:
    assert check_skip(tmp_path, RecognizeGelu(ORT), _model(body)) == ()


def test_a_declared_default_domain_gelu_is_emitted_below_opset_20(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target with its own Gelu kernel declares it at every opset and receives it, in the
    default domain with ONNX's attributes, even where it also declares com.microsoft's."""
    declared = Capabilities(
        frozenset({("", "Gelu")}),
        frozenset({"float32"}),
        fused_ops=(FusedOp("Gelu"), FusedOp("Gelu", "com.microsoft")),
    )
    monkeypatch.setattr(target_capabilities, "capabilities_of", lambda name: declared)
    model = load_text(tmp_path, _model(SPELLINGS["erf (x*a)*0.5, x*(1/sqrt2)"]))
    RecognizeGelu(RecognizeGeluConfig(target="reference"))(model)
    (gelu,) = model.graph  # ONNX text cannot say Gelu below opset 20: the loader refuses it
    assert (gelu.domain, gelu.op_type, gelu.inputs[0].name) == ("", "Gelu", "x")
    assert gelu.attributes.get_string("approximate") == "none"
    assert model.opset_imports == {"": 14}


def test_pipeline_options() -> None:
    (gelu,) = parse_pipeline("recognize-gelu{target=tvm tolerance=0.001}")
    assert gelu.config == RecognizeGeluConfig(target="tvm", tolerance=0.001)


def test_constants_to_fold_need_fold_constants_first(tmp_path: Path) -> None:
    """sqrt(2) computed by a Sqrt node would be a skip: the pipeline is refused with the fix."""
    body = SPELLINGS["erf (x*0.5)*a"].replace("Div(x, root2)", "Div(x, r)")
    model = load_text(tmp_path, _model(f"r = Sqrt(two)\n {body}", two=2.0))
    with pytest.raises(PipelineError, match="needs constant weights: run 'fold-constants'"):
        check_contracts(parse_pipeline("recognize-gelu"), model)
    check_contracts(parse_pipeline("fold-constants,recognize-gelu"), model)


@pytest.mark.parametrize(("opset", "form"), [(14, "erf"), (14, "tanh"), (20, "erf")])
def test_bert_like(tmp_path: Path, opset: int, form: str) -> None:
    model = load(build_bert_like(opset, gelu=form), tmp_path)
    feeds = bert_like_feeds()
    before = outputs_of(model, feeds)
    result = RecognizeGelu(ORT)(model)
    op = "Gelu" if form == "erf" or opset >= 20 else "FastGelu"
    assert sum(node.op_type == op for node in model.graph) == 2  # one per layer
    assert not any(node.op_type in ("Erf", "Tanh") for node in model.graph)
    assert result.skipped == ()
    assert verify(model) == []
    assert_close(before, outputs_of(model, feeds))
