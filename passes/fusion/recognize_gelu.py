"""Decomposed GELU -> one op.

Exporters spell GELU as five to nine elementwise nodes; a backend that has a GELU kernel (or a
cost model that knows it is one activation) only sees it after this pass. Two forms:

    erf:  x * 0.5 * (1 + Erf(x / sqrt(2)))                          (x/sqrt2 or x*0.7071...)
    tanh: 0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))  (Pow(x, 3) or x*x*x)

with the 0.5 applied to x, to (1 + ...), or to the product, and every Mul/Add operand order.
The result is ONNX `Gelu` from opset 20; before that, onnxruntime's com.microsoft `Gelu` (erf)
or `FastGelu` (tanh).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx_ir as ir

from passes.base import Pass, PassConfig, PassLog
from passes.option_range import bounded
from passes.rewrite import (
    NoMatch,
    consumer_of,
    default_opset,
    leaked_value_reason,
    other_input,
    produced_by,
    replace_nodes,
    scalar_constant,
    scalar_operand,
)

_ONNX_GELU_OPSET = 20
_MICROSOFT = "com.microsoft"
# Targets that run onnxruntime's contrib GELU ops (for models below opset 20).
_CONTRIB_TARGETS = frozenset({"onnxruntime"})


@dataclass(frozen=True)
class RecognizeGeluConfig(PassConfig):
    target: str = "onnxruntime"
    # relative, for the constants sqrt(2), 0.5, 1, sqrt(2/pi), 0.044715
    tolerance: float = bounded(1e-4, low=0, high=1, high_open=True)


class RecognizeGelu(Pass):
    """Recognize GELU so later stages cost and lower it as one activation, not a chain."""

    name = "recognize-gelu"
    summary = "replace decomposed GELU (erf or tanh form) by one Gelu/FastGelu op"
    config_type = RecognizeGeluConfig

    def run(self, model: ir.Model, log: PassLog) -> None:
        opset, tolerance = default_opset(model), self.config.tolerance
        for graph in model.graphs():
            for node in list(graph):
                if node.graph is not graph or node.op_type not in ("Erf", "Tanh") or node.domain:
                    continue
                plus_one = consumer_of(node.outputs[0], "Add")
                shifted = None if plus_one is None else scalar_operand(plus_one)
                if shifted is None:
                    continue  # not the "1 + f(...)" of a GELU: not a site
                rule = "gelu-erf" if node.op_type == "Erf" else "gelu-tanh"
                try:
                    _expect(shifted[1], 1.0, f"the constant added to {node.op_type}", tolerance)
                    x, nodes, output = _match(node, plus_one, tolerance)
                    fused = _fused_node(x, rule, opset, self.config.target)
                except NoMatch as why:
                    log.skip([node, plus_one], rule=rule, reason=str(why))
                    continue
                if fused.domain == _MICROSOFT and _MICROSOFT not in model.opset_imports:
                    model.opset_imports[_MICROSOFT] = 1
                    log.changed_graph(rule=rule, reason="imported opset com.microsoft 1")
                replace_nodes(
                    log,
                    nodes,
                    [fused],
                    {output: fused.outputs[0]},
                    rule=rule,
                    reason=f"{len(nodes)} nodes compute the {rule[5:]} GELU of '{x.name}'",
                )


def _fused_node(x: ir.Value, rule: str, opset: int, target: str) -> ir.Node:
    approximate = "none" if rule == "gelu-erf" else "tanh"
    if opset >= _ONNX_GELU_OPSET:
        return ir.node("Gelu", [x], {"approximate": approximate})
    if target not in _CONTRIB_TARGETS:
        raise NoMatch(
            f"ONNX Gelu needs opset {_ONNX_GELU_OPSET} (model imports {opset}) and target "
            f"'{target}' has no com.microsoft GELU"
        )
    return ir.node("Gelu" if approximate == "none" else "FastGelu", [x], domain=_MICROSOFT)


def _expect(found: float | None, wanted: float, what: str, tolerance: float) -> None:
    if found is None:
        raise NoMatch(f"{what} is not a constant scalar")
    if not math.isclose(found, wanted, rel_tol=tolerance):
        raise NoMatch(f"{what} is {found:.6g}, not {wanted:.6g}")


def _match(
    anchor: ir.Node, plus_one: ir.Node, tolerance: float
) -> tuple[ir.Value, list[ir.Node], ir.Value]:
    """(x, every node of the pattern, the GELU output), or NoMatch with the reason."""
    if anchor.op_type == "Erf":
        x, front = _erf_argument(anchor, tolerance)
    else:
        x, front = _tanh_argument(anchor, tolerance)
    back, output = _times_half_x(plus_one.outputs[0], x, tolerance)
    nodes = [*front, anchor, plus_one, *back]
    leak = leaked_value_reason(nodes, [output])
    if leak is not None:
        raise NoMatch(leak)
    return x, nodes, output


def _erf_argument(erf: ir.Node, tolerance: float) -> tuple[ir.Value, list[ir.Node]]:
    """x and the node computing x / sqrt(2) or x * (1/sqrt(2)) for the Erf."""
    div = produced_by(erf.inputs[0], "Div")
    if div is not None:
        _expect(scalar_constant(div.inputs[1]), math.sqrt(2.0), "the Erf divisor", tolerance)
        return div.inputs[0], [div]
    mul = produced_by(erf.inputs[0], "Mul")
    scaled = None if mul is None else scalar_operand(mul)
    if mul is None or scaled is None:
        raise NoMatch("the Erf input is not x / sqrt(2)")
    _expect(scaled[1], math.sqrt(0.5), "the Erf input scale", tolerance)
    return scaled[0], [mul]


def _tanh_argument(tanh: ir.Node, tolerance: float) -> tuple[ir.Value, list[ir.Node]]:
    """x and the nodes computing sqrt(2/pi) * (x + 0.044715 * x^3) for the Tanh."""
    outer = produced_by(tanh.inputs[0], "Mul")
    scaled = None if outer is None else scalar_operand(outer)
    inner = None if scaled is None else produced_by(scaled[0], "Add")
    if outer is None or scaled is None or inner is None:
        raise NoMatch("the Tanh input is not sqrt(2/pi) * (x + 0.044715 * x^3)")
    _expect(scaled[1], math.sqrt(2.0 / math.pi), "the Tanh input scale", tolerance)
    for x, term in (inner.inputs, reversed(inner.inputs)):
        cubic = produced_by(term, "Mul")
        weighted = None if cubic is None else scalar_operand(cubic)
        cube = None if weighted is None else _cube_of(weighted[0], x)
        if cubic is not None and weighted is not None and cube is not None:
            _expect(weighted[1], 0.044715, "the cubic coefficient", tolerance)
            return x, [*cube, cubic, inner, outer]
    raise NoMatch("the Tanh input is not sqrt(2/pi) * (x + 0.044715 * x^3)")


def _cube_of(value: ir.Value, x: ir.Value) -> list[ir.Node] | None:
    """The nodes computing `value` = x^3 as Pow(x, 3) or x*x*x (either grouping), else None."""
    power = produced_by(value, "Pow")
    if power is not None:
        return [power] if power.inputs[0] is x and scalar_constant(power.inputs[1]) == 3 else None
    outer = produced_by(value, "Mul")
    square = None if outer is None else produced_by(other_input(outer, x), "Mul")
    if outer is None or square is None or list(square.inputs) != [x, x]:
        return None
    return [square, outer]


def _times_half_x(
    shifted: ir.Value, x: ir.Value, tolerance: float
) -> tuple[list[ir.Node], ir.Value]:
    """The nodes multiplying `shifted` (1 + f) by x and by 0.5, in any grouping, and the
    product: (x * 0.5) * s, (x * s) * 0.5 or (s * 0.5) * x."""
    first = consumer_of(shifted, "Mul")
    partner = None if first is None else other_input(first, shifted)
    if first is None or partner is None:
        raise NoMatch(f"'{shifted.name}' is not multiplied by x and 0.5")
    half = produced_by(partner, "Mul")
    half_of = None if half is None else scalar_operand(half)
    if half is not None and half_of is not None and half_of[0] is x:
        _expect(half_of[1], 0.5, "the GELU factor", tolerance)
        return [half, first], first.outputs[0]
    factor = None if partner is x else scalar_constant(partner)
    if partner is not x and factor is None:
        raise NoMatch(f"'{shifted.name}' is not multiplied by x and 0.5")
    product = first.outputs[0]
    second = consumer_of(product, "Mul")
    last = None if second is None else other_input(second, product)
    if second is None or last is None:
        raise NoMatch(f"'{product.name}' is not multiplied by {'0.5' if partner is x else 'x'}")
    if partner is x:
        factor = scalar_constant(last)
    elif last is not x:
        raise NoMatch(f"'{product.name}' is not multiplied by x")
    _expect(factor, 0.5, "the GELU factor", tolerance)
    return [first, second], second.outputs[0]
