"""recognize-gelu: decomposed GELU -> one op.

Exporters spell GELU as five to nine elementwise nodes; a backend that has a GELU kernel (or a
cost model that knows it is one activation) only sees it after this pass. Two forms:

    erf:  x * 0.5 * (1 + Erf(x / sqrt(2)))                          (x/sqrt2 or x*0.7071...)
    tanh: 0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))  (Pow(x, 3) or x*x*x)

with the 0.5 applied to x, to (1 + ...), or to the product, and every Mul/Add operand order.
Each form is one pattern for 1 + f(argument), the spellings of its argument as alternatives,
times the three groupings of the product: three rules per form, all under the form's name.

The result is a default-domain `Gelu` (`approximate` none or tanh) where the target runs one:
ONNX defines it from opset 20, and a target may declare its own at any opset. Otherwise it is
com.microsoft `Gelu` (erf) or `FastGelu` (tanh), for a target that declares those. With no
target (the default), only ONNX's Gelu: below opset 20 every site is skipped with the reason.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import onnx_ir as oir

from passes.contracts import CONSTANT_WEIGHTS
from passes.engine.match import Match
from passes.engine.patterns import AnyValue, OneOf, Op, Scalar
from passes.engine.rule_set_pass import RuleSetPass
from passes.engine.rules import Emits, Rewrite, RewriteContext, Rule
from passes.option_range import bounded
from passes.target_capabilities import TargetedPassConfig

MICROSOFT = "com.microsoft"
# The GELU's input: one value, wherever the patterns read it.
X = AnyValue("x")


@dataclass(frozen=True)
class RecognizeGeluConfig(TargetedPassConfig):
    # relative, for the constants sqrt(2), 0.5, 1, sqrt(2/pi), 0.044715
    tolerance: float = bounded(1e-4, low=0, high=1, high_open=True)


@dataclass(frozen=True)
class _Form:
    """A GELU form: its rule, the function of 1 + f(...), ONNX Gelu's `approximate` for it,
    and the com.microsoft op that computes it."""

    rule: str
    function: str
    approximate: str
    contrib: str


_ERF = _Form("gelu-erf", "Erf", "none", "Gelu")
_TANH = _Form("gelu-tanh", "Tanh", "tanh", "FastGelu")


def _erf_argument(tolerance: float) -> OneOf:
    """x / sqrt(2), or x * (1/sqrt(2))."""
    return OneOf(
        (
            Op("Div", (X, Scalar(math.sqrt(2.0), tolerance, role="divisor"))),
            Op("Mul", (X, Scalar(math.sqrt(0.5), tolerance, role="1/sqrt(2) factor"))),
        )
    )


def _tanh_argument(tolerance: float) -> Op:
    """sqrt(2/pi) * (x + 0.044715 * x^3), x^3 as Pow(x, 3) (exactly 3) or x * x * x."""
    cube = OneOf(
        (
            Op("Pow", (X, Scalar(3.0, rel_tol=0.0, role="exponent"))),
            Op("Mul", (Op("Mul", (X, X)), X)),
        )
    )
    cubic = Op("Mul", (cube, Scalar(0.044715, tolerance, role="x^3 coefficient")))
    factor = Scalar(math.sqrt(2.0 / math.pi), tolerance, role="sqrt(2/pi) factor")
    return Op("Mul", (Op("Add", (X, cubic)), factor))


def _products(shifted: Op, tolerance: float) -> tuple[Op, ...]:
    """x * 0.5 * `shifted` in its three groupings: (x * 0.5) * s, (x * s) * 0.5, (s * 0.5) * x."""
    half = Scalar(0.5, tolerance, role="GELU factor")
    return (
        Op("Mul", (Op("Mul", (X, half)), shifted)),
        Op("Mul", (Op("Mul", (X, shifted)), half)),
        Op("Mul", (Op("Mul", (shifted, half)), X)),
    )


def _gelu_rules(tolerance: float) -> tuple[Rule, ...]:
    """The rules of both forms, with constants matched within relative `tolerance`. Each asks
    for ONNX's Gelu first, then the form's com.microsoft op."""
    rules = []
    for form, argument in ((_ERF, _erf_argument(tolerance)), (_TANH, _tanh_argument(tolerance))):
        one = Scalar(1.0, tolerance, role="constant")
        shifted = Op("Add", (Op(form.function, (argument,)), one))
        requires = (Emits("Gelu"), Emits(form.contrib, MICROSOFT))
        build = functools.partial(_gelu, form)
        rules += [
            Rule(form.rule, product, build, requires) for product in _products(shifted, tolerance)
        ]
    return tuple(rules)


def _gelu(form: _Form, match: Match, context: RewriteContext) -> Rewrite:
    """The GELU op granted: a default-domain Gelu with the form's `approximate`, or the
    target's com.microsoft op of the form."""
    x, granted = match.value("x"), context.emits
    assert x is not None and granted is not None, "x is an input; both forms require an op"
    if granted.domain:
        node = oir.node(granted.op_type, [x], domain=granted.domain)
    else:
        node = oir.node("Gelu", [x], {"approximate": form.approximate})
    return Rewrite(
        (node,),
        {match.root.outputs[0]: node.outputs[0]},
        f"{len(match.nodes)} nodes compute the {form.function.lower()} GELU of '{x.name}'",
    )


class RecognizeGelu(RuleSetPass):
    """Recognize GELU so later stages cost and lower it as one activation, not a chain."""

    name = "recognize-gelu"
    summary = "replace decomposed GELU (erf or tanh form) by one Gelu/FastGelu op"
    config_type = RecognizeGeluConfig
    requires = (CONSTANT_WEIGHTS,)  # sqrt(2), 0.5, ... are read as constants

    def rule_set(self) -> tuple[Rule, ...]:
        return _gelu_rules(self.config.tolerance)
