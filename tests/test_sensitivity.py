"""Per-layer sensitivity and the drift budget loop, with a lossy pass whose damage per layer is
known: it adds noise of a set size to the weight of each MatMul it may touch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as oir
import pytest

from ir.errors import AsicperfError
from passes.audit import ChangeKind
from passes.base import Pass, PassLog
from passes.layer_scope import LayerScopeConfig, scoped
from passes.sensitivity import DriftBudget, DriftProbe, fit_budget, layer_sensitivity
from tests.onnx_text import load_onnx_text

# Relative noise per weight: w2 is the layer that hurts.
_NOISE = {"w1": 0.001, "w2": 0.3, "w3": 0.01}


@dataclass(frozen=True)
class NoisyConfig(LayerScopeConfig):
    pass


class NoisyWeights(Pass):
    name = "noisy-weights"
    summary = "perturbs MatMul weights (a stand-in for quantization error)"
    config_type = NoisyConfig

    def run(self, model: oir.Model, log: PassLog) -> None:
        assert isinstance(self.config, NoisyConfig)
        rng = np.random.default_rng(0)
        for node in model.graph:
            if node.op_type != "MatMul" or not self.config.in_scope(node):
                continue
            weight = node.inputs[1]
            assert weight is not None and weight.const_value is not None
            values = weight.const_value.numpy()
            noise = rng.standard_normal(values.shape).astype(np.float32) * _NOISE[weight.name]
            weight.const_value = oir.Tensor(values * (1 + noise), name=weight.name)
            log.changed(ChangeKind.WEIGHTS, [node], rule="noise", reason=weight.name)


def _mlp(tmp_path: Path) -> oir.Model:
    rng = np.random.default_rng(1)

    def weight(name: str, rows: int, cols: int) -> str:
        values = ", ".join(f"{v:.4f}" for v in rng.standard_normal(rows * cols) / np.sqrt(rows))
        return f"float[{rows}, {cols}] {name} = {{{values}}}"

    text = f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[4, 16] x) => (float[4, 10] y)
<{weight("w1", 16, 16)}, {weight("w2", 16, 16)}, {weight("w3", 16, 10)}> {{
    a = MatMul(x, w1)
    ra = Relu(a)
    b = MatMul(ra, w2)
    rb = Relu(b)
    y = MatMul(rb, w3)
}}"""
    return load_onnx_text(tmp_path, text)


def _ids(model: oir.Model) -> dict[str, str]:
    """MatMul node id by the weight it reads."""
    return {
        node.inputs[1].name: node.metadata_props["asicperf.id"]
        for node in model.graph
        if node.op_type == "MatMul"
    }


def test_sensitivity_ranks_the_noisiest_layer_first(tmp_path: Path) -> None:
    model = _mlp(tmp_path)
    ids = _ids(model)
    budget = DriftBudget("cosine", 0.999)
    ranking = layer_sensitivity(model, [NoisyWeights()], DriftProbe(model), budget)
    assert [layer.node for layer in ranking] == [ids["w2"], ids["w3"], ids["w1"]]
    assert {layer.op_type for layer in ranking} == {"MatMul"}
    cosines = [budget.measure(list(layer.drifts)) for layer in ranking]
    assert cosines == sorted(cosines)
    assert cosines[-1] > 0.99999  # w1's 0.1 % noise


def test_budget_keeps_the_most_sensitive_layers_out_until_it_holds(tmp_path: Path) -> None:
    model = _mlp(tmp_path)
    ids = _ids(model)
    probe = DriftProbe(model)
    full = probe.drift(NoisyWeights()(_mlp(tmp_path)).model)
    budget = DriftBudget("cosine", 0.9999)
    assert not budget.holds(full)
    fit = fit_budget(model, [NoisyWeights()], budget, probe)
    assert fit.holds
    assert fit.kept[0].node == ids["w2"]
    assert ids["w1"] not in [layer.node for layer in fit.kept]
    record = fit.to_json(budget)
    assert record["holds"] and record["measured"] >= 0.9999
    assert record["kept_fp32"][0]["reason"].startswith("alone it moves cosine to ")
    changed = {c.nodes[0] for r in fit.result.records for c in r.changes}
    assert ids["w2"] not in changed and ids["w1"] in changed


def test_a_budget_already_met_keeps_nothing(tmp_path: Path) -> None:
    model = _mlp(tmp_path)
    fit = fit_budget(model, [NoisyWeights()], DriftBudget("max-abs", 100.0), DriftProbe(model))
    assert fit.holds and fit.kept == ()


def test_scoping_limits_and_skips_nodes(tmp_path: Path) -> None:
    model = _mlp(tmp_path)
    ids = _ids(model)
    (only_w1,) = scoped([NoisyWeights()], only=(ids["w1"],))
    result = only_w1(model)
    assert [c.reason for c in result.changes] == ["w1"]
    (skip_w1,) = scoped([NoisyWeights()], skip=(ids["w1"],))
    assert [c.reason for c in skip_w1(_mlp(tmp_path)).changes] == ["w2", "w3"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cosine", "expected METRIC=VALUE"),
        ("psnr=30", "unknown metric 'psnr'"),
        ("cosine=high", "expected METRIC=VALUE"),
    ],
)
def test_bad_budget_is_one_line(text: str, message: str) -> None:
    with pytest.raises(AsicperfError, match=message):
        DriftBudget.parse(text)


def test_budget_metrics_read_the_worst_output() -> None:
    drifts = [
        {"cosine": 0.99, "max_abs": 0.1, "top1_agreement": None},
        {"cosine": 0.999, "max_abs": 0.3, "top1_agreement": 0.97},
    ]
    assert DriftBudget.parse("cosine=0.995").measure(drifts) == 0.99
    assert not DriftBudget.parse("cosine=0.995").holds(drifts)
    assert DriftBudget.parse("max-abs=0.3").holds(drifts)
    assert DriftBudget.parse("top1-agreement=0.96").holds(drifts)
