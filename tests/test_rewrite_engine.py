"""The rewrite engine on toy rules: the pattern language (commutative inputs, optional inputs,
predicates, captures), the walk into subgraphs and functions, the fixed point, the target's
capabilities, and skip reasons that name the sub-pattern that failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as oir
import pytest
from rewrite_cases import check_rewrite, check_skip, load_text

from passes.audit import ChangeKind
from passes.base import PassConfig
from passes.engine.match import Match
from passes.engine.patterns import AnyValue, Const, OneOf, Op, OptionalInput, Scalar
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Anchored, Emits, Rewrite, RewriteContext, Rule
from passes.rewrite import NoMatch, add_initializer

Build = Callable[[Match, RewriteContext], Rewrite]


@dataclass(frozen=True)
class _Config(PassConfig):
    target: str = ""


class _Rules(RuleSetPass):
    """A pass applying the rules it is given (the pass catalog never sees it)."""

    name = "test-rules"
    summary = "toy rules for the engine tests"
    config_type = _Config

    def __init__(self, *rules: Rule, target: str = "") -> None:
        super().__init__(_Config(target))
        self._rules = rules

    def rule_set(self) -> tuple[Rule, ...]:
        return self._rules


def _becomes(op_type: str, source: str = "x") -> Build:
    """A build replacing the site by one `op_type` node reading the value captured as
    `source`."""

    def build(match: Match, context: RewriteContext) -> Rewrite:
        node = oir.node(op_type, [match.value(source)])
        return Rewrite((node,), {match.outputs[0]: node.outputs[0]}, f"becomes {op_type}")

    return build


def _model(body: str, *, inputs: str = "float[2] x", weights: str = "", opsets: str = "") -> str:
    """ONNX text of a graph (inputs) => (float[2] y) with `body` and initializers `weights`."""
    initializers = f"<{weights}>" if weights else ""
    return f"""
        <ir_version: 8, opset_import: ["" : 17{opsets}]>
        g ({inputs}) => (float[2] y) {initializers}
        {{
            {body}
        }}
    """


ONE = "float one = {1.0}"
TIMES_ONE = Rule("times-one", Op("Mul", inputs=(AnyValue("x"), Scalar(1.0))), _becomes("Identity"))


@pytest.mark.parametrize("product", ["Mul(x, one)", "Mul(one, x)"])
def test_mul_matches_its_inputs_in_either_order(tmp_path: Path, product: str) -> None:
    before = _model(f"y = {product}", weights=ONE)
    result = check_rewrite(tmp_path, _Rules(TIMES_ONE), before, _model("y = Identity(x)"))
    assert result.skipped == ()


def test_a_scalar_within_tolerance_matches(tmp_path: Path) -> None:
    before = _model("y = Mul(x, one)", weights="float one = {1.00001}")
    check_rewrite(tmp_path, _Rules(TIMES_ONE), before, _model("y = Identity(x)"))


@pytest.mark.parametrize(("product", "index"), [("Mul(x, c)", 1), ("Mul(c, x)", 0)])
def test_a_scalar_out_of_tolerance_is_a_skip_naming_the_input(
    tmp_path: Path, product: str, index: int
) -> None:
    """Both input orders fit Mul's structure; the one putting the constant in the Scalar's
    place is tried first, so the reason is about c, not about x being no constant."""
    before = _model(f"y = {product}", weights="float c = {1.5}")
    (skip,) = check_skip(tmp_path, _Rules(TIMES_ONE), before)
    assert (skip.rule, skip.nodes) == ("times-one", ("n0",))
    assert skip.reason == f"Mul not fused: input {index} of Mul 'c' is 1.5, not 1"


def test_a_scalar_with_several_elements_is_a_skip(tmp_path: Path) -> None:
    before = _model("y = Mul(x, c)", weights="float[2] c = {1.0, 1.0}")
    (skip,) = check_skip(tmp_path, _Rules(TIMES_ONE), before)
    assert skip.reason == "Mul not fused: input 1 of Mul 'c' has shape [2], not one element"


def test_input_orders_over_the_same_nodes_are_one_site(tmp_path: Path) -> None:
    before = _model("y = Mul(x, z)", inputs="float[2] x, float[2] z")
    (skip,) = check_skip(tmp_path, _Rules(TIMES_ONE), before)
    assert skip.reason == "Mul not fused: input 1 of Mul 'z' is a graph input"


def test_another_op_is_not_a_site(tmp_path: Path) -> None:
    before = _model("y = Add(x, one)", weights=ONE)
    assert check_skip(tmp_path, _Rules(TIMES_ONE), before) == ()


def test_a_constant_input_names_what_computes_it_instead(tmp_path: Path) -> None:
    plus_bias = Rule("plus-bias", Op("Add", inputs=(AnyValue("x"), Const("b"))), _becomes("Relu"))
    before = _model("m = MatMul(x, w)\n y = Add(x, m)", weights="float[2,2] w = {1, 0, 0, 1}")
    (skip,) = check_skip(tmp_path, _Rules(plus_bias), before)
    assert skip.reason == "Add not fused: input 1 of Add 'm' is computed by a MatMul node"


def _rank(bound: np.ndarray) -> str | None:
    return None if bound.ndim == 0 else f"has rank {bound.ndim}, not 0"


def _clip_from_zero(match: Match, context: RewriteContext) -> Rewrite:
    """Clip(Relu(x), low, high) = Clip(x, max(low, 0), high)."""
    low = 0.0 if match.value("low") is None else max(0.0, float(match.constant("low")))
    floor = add_initializer(context.graph, "floor", np.array(low, np.float32))
    high = match.value("high")
    node = oir.node("Clip", [match.value("x"), floor, *([high] if high is not None else [])])
    return Rewrite(
        (node,),
        {match.root.outputs[0]: node.outputs[0]},
        f"{match.node('relu').op_type} folded into the Clip floor",
        notes=(f"added initializer '{floor.name}'",),
    )


RELU_CLIP = Rule(
    "relu-clip",
    Op(
        "Clip",
        inputs=(
            Op("Relu", inputs=(AnyValue("x"),), capture="relu"),
            OptionalInput(Const("low", role="min", check=_rank)),
            OptionalInput(Const("high", role="max", check=_rank)),
        ),
    ),
    _clip_from_zero,
)


def test_optional_inputs_may_be_absent(tmp_path: Path) -> None:
    before = _model("r = Relu(x)\n y = Clip(r)")
    expected = _model("y = Clip(x, floor)", weights="float floor = {0.0}")
    result = check_rewrite(tmp_path, _Rules(RELU_CLIP), before, expected)
    notes = [change for change in result.changes if change.kind == ChangeKind.GRAPH_IO]
    assert [(note.rule, note.reason) for note in notes] == [
        ("relu-clip", "added initializer 'floor'")
    ]


def test_optional_inputs_that_are_given_are_captured(tmp_path: Path) -> None:
    before = _model(
        "r = Relu(x)\n y = Clip(r, lo, hi)", weights="float lo = {-1.0}, float hi = {6.0}"
    )
    expected = _model("y = Clip(x, floor, hi)", weights="float floor = {0.0}, float hi = {6.0}")
    check_rewrite(tmp_path, _Rules(RELU_CLIP), before, expected)


def test_a_constant_check_words_the_skip_reason_with_the_role(tmp_path: Path) -> None:
    before = _model("r = Relu(x)\n y = Clip(r, lo)", weights="float[1] lo = {-1.0}")
    (skip,) = check_skip(tmp_path, _Rules(RELU_CLIP), before)
    assert skip.nodes == ("n0", "n1")
    assert skip.reason == "Relu+Clip not fused: Clip min 'lo' has rank 1, not 0"


def test_the_build_receives_the_captures(tmp_path: Path) -> None:
    seen: list[Match] = []

    def record(match: Match, context: RewriteContext) -> Rewrite:
        seen.append(match)
        return _clip_from_zero(match, context)

    model = load_text(tmp_path, _model("r = Relu(x)\n y = Clip(r, lo)", weights="float lo = {2}"))
    relu, clip = model.graph
    x, low = model.graph.inputs[0], clip.inputs[1]
    _Rules(Rule("relu-clip", RELU_CLIP.pattern, record))(model)
    (match,) = seen
    assert match.nodes == (relu, clip) and match.outputs == (clip.outputs[0],)
    assert match.captures == {"x": x, "relu": relu, "low": low, "high": None}
    assert match.root is clip and float(match.constant("low")) == 2.0


def _doubled_relu(match: Match, context: RewriteContext) -> Rewrite:
    """Relu(x) + Relu(x) = Relu(x) * 2."""
    relu = oir.node("Relu", [match.value("x")])
    two = add_initializer(context.graph, "two", np.array(2.0, np.float32))
    times_two = oir.node("Mul", [relu.outputs[0], two])
    return Rewrite((relu, times_two), {match.root.outputs[0]: times_two.outputs[0]}, "doubled")


def test_a_node_two_sub_patterns_match_counts_once(tmp_path: Path) -> None:
    relu = Op("Relu", inputs=(AnyValue("x"),))
    doubled = Rule("doubled-relu", Op("Add", inputs=(relu, relu)), _doubled_relu)
    before = _model("r = Relu(x)\n y = Add(r, r)")
    expected = _model("r = Relu(x)\n y = Mul(r, two)", weights="float two = {2.0}")
    result = check_rewrite(tmp_path, _Rules(doubled), before, expected)
    removed = [change.nodes for change in result.changes if change.kind == ChangeKind.REMOVED_NODE]
    assert removed == [("n0",), ("n1",)]


X = AnyValue("x")
CUBE = Rule("cube", Op("Mul", inputs=(Op("Mul", inputs=(X, X)), X)), _becomes("Identity"))


def test_a_capture_in_several_places_is_one_value(tmp_path: Path) -> None:
    cube = _model("q = Mul(x, x)\n y = Mul(x, q)")
    check_rewrite(tmp_path, _Rules(CUBE), cube, _model("y = Identity(x)"))
    other = _model("q = Mul(x, x)\n y = Mul(q, z)", inputs="float[2] x, float[2] z")
    assert check_skip(tmp_path / "other", _Rules(CUBE), other) == ()  # not a site: no record


# Neg(x) + Relu(Neg(x)): the Neg's output is read by two nodes of the pattern.
SHARED = Op("Neg", inputs=(AnyValue("x"),), capture="neg")
NEG_PLUS_RELU = Rule(
    "neg-plus-relu", Op("Add", inputs=(SHARED, Op("Relu", inputs=(SHARED,)))), _becomes("Abs")
)


def test_an_inner_output_read_by_several_nodes_of_the_pattern_is_inside(tmp_path: Path) -> None:
    before = _model("n = Neg(x)\n r = Relu(n)\n y = Add(r, n)")
    check_rewrite(tmp_path, _Rules(NEG_PLUS_RELU), before, _model("y = Abs(x)"))
    read_outside = """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y, float[2] z)
        {
            n = Neg(x)
            r = Relu(n)
            y = Add(r, n)
            z = Sigmoid(n)
        }
    """
    (skip,) = check_skip(tmp_path / "outside", _Rules(NEG_PLUS_RELU), read_outside)
    assert skip.reason == "Neg+Relu+Add not fused: Neg output has 3 consumers"


# Relu(Neg(x)) or Relu(x): the Neg when there is one that may go, else the Relu alone.
RELU_OF = Rule(
    "relu-of",
    Op("Relu", inputs=(OneOf((Op("Neg", inputs=(AnyValue("x"),), capture="neg"), AnyValue("x"))),)),
    _becomes("Sigmoid"),
)


def test_one_of_takes_the_first_alternative_that_fits(tmp_path: Path) -> None:
    before = _model("n = Neg(x)\n y = Relu(n)")
    check_rewrite(tmp_path, _Rules(RELU_OF), before, _model("y = Sigmoid(x)"))


def test_one_of_falls_back_to_the_next_alternative(tmp_path: Path) -> None:
    """The Neg is read elsewhere, so the first alternative's site fails; the Relu alone is the
    next site, and it passes."""
    before = _model("n = Neg(x)\n r = Relu(n)\n y = Add(r, n)")
    expected = _model("n = Neg(x)\n r = Sigmoid(n)\n y = Add(r, n)")
    result = check_rewrite(tmp_path, _Rules(RELU_OF), before, expected)
    assert result.skipped == ()


def test_one_of_captures_none_for_the_alternatives_not_taken(tmp_path: Path) -> None:
    seen: list[Match] = []

    def record(match: Match, context: RewriteContext) -> Rewrite:
        seen.append(match)
        return _becomes("Sigmoid")(match, context)

    model = load_text(tmp_path, _model("y = Relu(x)"))
    _Rules(Rule("relu-of", RELU_OF.pattern, record))(model)
    (match,) = seen
    assert match.captures == {"x": model.graph.inputs[0], "neg": None}


def _alpha_zero(node: oir.Node) -> str | None:
    alpha = node.attributes.get_float("alpha", 0.01)
    return None if alpha == 0 else f"LeakyRelu alpha is {alpha:g}, not 0"


FLAT_LEAK = Rule(
    "flat-leak", Op("LeakyRelu", inputs=(AnyValue("x"),), check=_alpha_zero), _becomes("Relu")
)


def test_a_node_check_decides_a_site(tmp_path: Path) -> None:
    before = _model("y = LeakyRelu <alpha = 0.0> (x)")
    check_rewrite(tmp_path, _Rules(FLAT_LEAK), before, _model("y = Relu(x)"))


def test_a_node_check_failing_is_the_skip_reason(tmp_path: Path) -> None:
    (skip,) = check_skip(tmp_path, _Rules(FLAT_LEAK), _model("y = LeakyRelu <alpha = 0.5> (x)"))
    assert skip.reason == "LeakyRelu not fused: LeakyRelu alpha is 0.5, not 0"


DOUBLE_NEG = Rule(
    "double-neg", Op("Neg", inputs=(Op("Neg", inputs=(AnyValue("x"),)),)), _becomes("Identity")
)


@pytest.mark.parametrize(
    ("outputs", "reason"),
    [
        ("float[2] y, float[2] z", "Neg output is a graph output"),
        ("float[2] y, float[2] r", "Neg output has 2 consumers"),
    ],
)
def test_an_inner_output_read_elsewhere_is_a_skip(
    tmp_path: Path, outputs: str, reason: str
) -> None:
    before = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => ({outputs})
        {{
            z = Neg(x)
            y = Neg(z)
            r = Relu(z)
        }}
    """
    skips = check_skip(tmp_path, _Rules(DOUBLE_NEG), before)
    assert [(skip.nodes, skip.reason) for skip in skips] == [
        (("n0", "n1"), f"Neg+Neg not fused: {reason}")
    ]


def test_an_inner_node_with_another_output_in_use_is_a_skip(tmp_path: Path) -> None:
    largest = Rule(
        "relu-topk",
        Op("Relu", inputs=(Op("TopK", inputs=(AnyValue("x"), AnyValue("k"))),)),
        _becomes("Identity"),
    )
    before = """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x, int64[1] k) => (float[1] y, int64[1] i)
        {
            v, i = TopK(x, k)
            y = Relu(v)
        }
    """
    (skip,) = check_skip(tmp_path, _Rules(largest), before)
    assert skip.reason == "TopK+Relu not fused: intermediate value 'i' is a graph output"


def _same_relu(site: tuple[oir.Node, ...], context: RewriteContext) -> Match:
    inner, outer = site
    x = inner.inputs[0]
    if x.dtype != oir.DataType.FLOAT:
        raise NoMatch(f"Relu of Relu of '{x.name}', which is {x.dtype}, not FLOAT")
    return Match(site, (outer.outputs[0],), {"x": x})


def _relu_of_relu(node: oir.Node) -> tuple[oir.Node, ...] | None:
    inner = node.inputs[0].producer()
    return None if inner is None or inner.op_type != "Relu" else (inner, node)


RELU_RELU = Rule("relu-relu", Anchored("Relu", _relu_of_relu, _same_relu), _becomes("Relu"))


def test_a_procedural_rule_rewrites_what_it_matches(tmp_path: Path) -> None:
    before = _model("r = Relu(x)\n y = Relu(r)")
    check_rewrite(tmp_path, _Rules(RELU_RELU), before, _model("y = Relu(x)"))


def test_a_procedural_rule_words_its_own_skip_reasons(tmp_path: Path) -> None:
    before = """
        <ir_version: 8, opset_import: ["" : 17]>
        g (int32[2] x) => (int32[2] y)
        {
            r = Relu(x)
            y = Relu(r)
        }
    """
    (skip,) = check_skip(tmp_path, _Rules(RELU_RELU), before)
    assert (skip.rule, skip.nodes) == ("relu-relu", ("n0", "n1"))
    assert skip.reason == "Relu of Relu of 'x', which is INT32, not FLOAT"


def test_rules_apply_inside_if_branches_and_functions(tmp_path: Path) -> None:
    template = """
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        g (bool c, float[2] x) => (float[2] y, float[2] z) <float one = {{1.0}}>
        {{
            y = If (c) <
                then_branch = t () => (float[2] a) {{ {then} }},
                else_branch = e () => (float[2] b) {{ b = Neg(x) }}
            >
            z = local.f(x)
        }}
        <domain: "local", opset_import: ["" : 17]>
        f (p) => (q)
        {{
            k = Constant <value = float {{1.0}}> ()
            {body}
        }}
    """
    before = template.format(then="a = Mul(x, one)", body="q = Mul(k, p)")
    expected = template.format(then="a = Identity(x)", body="q = Identity(p)")
    result = check_rewrite(tmp_path, _Rules(TIMES_ONE), before, expected)
    assert [change.rule for change in result.changes] == ["times-one"] * 4


def test_rewrites_repeat_until_nothing_changes(tmp_path: Path) -> None:
    """0 - (-x): the Neg that replaces the Sub is a new site of double-neg, found in round 2."""
    zero_minus = Rule("zero-minus", Op("Sub", inputs=(Scalar(0.0), AnyValue("x"))), _becomes("Neg"))
    before = _model("a = Neg(x)\n y = Sub(zero, a)", weights="float zero = {0.0}")
    result = check_rewrite(
        tmp_path, _Rules(DOUBLE_NEG, zero_minus), before, _model("y = Identity(x)")
    )
    added = [change for change in result.changes if change.kind == ChangeKind.ADDED_NODE]
    assert [(change.rule, change.replaces) for change in added] == [
        ("zero-minus", ("n1",)),
        ("double-neg", ("n0", "n2")),
    ]


def test_a_rule_that_never_stops_rewriting_is_an_error(tmp_path: Path) -> None:
    forever = Rule("forever", Op("Relu", inputs=(AnyValue("x"),)), _becomes("Relu"))
    model = load_text(tmp_path, _model("y = Relu(x)"))
    with pytest.raises(RuntimeError, match="'test-rules' still rewrites after 10 rounds"):
        _Rules(forever)(model)


def _emitted(match: Match, context: RewriteContext) -> Rewrite:
    """Sigmoid(x) as whatever op was granted (a toy: only the engine's choice is checked)."""
    assert context.emits is not None
    node = oir.node(context.emits.op_type, [match.value("x")], domain=context.emits.domain)
    return Rewrite((node,), {match.outputs[0]: node.outputs[0]}, f"granted {node.op_type}")


GELU_SOMEHOW = Rule(
    "as-gelu",
    Op("Sigmoid", inputs=(AnyValue("x"),)),
    _emitted,
    requires=(Emits("Gelu"), Emits("Gelu", "com.microsoft")),
)


def test_a_rule_the_target_cannot_run_is_a_skip_with_the_reason(tmp_path: Path) -> None:
    (skip,) = check_skip(tmp_path, _Rules(GELU_SOMEHOW), _model("y = Sigmoid(x)"))
    assert skip.reason == (
        "Sigmoid not fused: ONNX defines no Gelu at opset 17 and no target is given "
        "(target=NAME); com.microsoft.Gelu is not a standard ONNX op and no target is given "
        "(target=NAME)"
    )


def test_the_first_op_the_target_may_emit_is_granted(tmp_path: Path) -> None:
    onnx_gelu = _model("y = Sigmoid(x)").replace('"" : 17', '"" : 20')
    check_rewrite(
        tmp_path / "onnx", _Rules(GELU_SOMEHOW), onnx_gelu, onnx_gelu.replace("Sigmoid", "Gelu")
    )


def test_an_op_of_a_new_domain_is_imported_and_recorded(tmp_path: Path) -> None:
    expected = _model("y = com.microsoft.Gelu(x)", opsets=', "com.microsoft" : 1')
    rules = _Rules(GELU_SOMEHOW, target="onnxruntime")
    result = check_rewrite(tmp_path, rules, _model("y = Sigmoid(x)"), expected)
    assert result.changes[0].kind == ChangeKind.GRAPH_IO
    assert result.changes[0].reason == "imported opset com.microsoft 1"
