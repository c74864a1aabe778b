"""Which layers a lossy pipeline (int8, bf16, sparsify) hurts most, and keeping the worst ones
out of it until the outputs stay within a drift budget.

Drift is always measured against the unmodified FP32 model, on one seeded batch, on the
reference path (`ir.reference`: the model run as written, graph optimizations off), or, for a
model holding ops the reference path lacks, on the bound target (`passes.checked_run`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as oir

from ir.drift import drift_record
from ir.errors import AsicperfError
from ir.logit_drift import VOCABULARY_OUTPUT_NAME
from ir.model_io import copy_model
from ir.node_ids import NODE_ID_KEY
from ir.seeded_inputs import seeded_inputs
from passes.base import Pass
from passes.checked_run import ModelRunner, ReferenceRunner
from passes.layer_scope import is_layer_scoped, scoped
from passes.manager import PipelineResult, run_pipeline


def _worst_kl(drifts: list[dict]) -> float:
    """The largest mean KL divergence of the vocabulary outputs (`ir.drift.drift_record`): a
    language model's drift is read in its next-token distributions, not in its raw logits."""
    means = [d["kl_divergence"]["mean"] for d in drifts if "kl_divergence" in d]
    if not means:
        raise AsicperfError(
            "kl: the model has no vocabulary output (a float [..., vocab] output named "
            f"'{VOCABULARY_OUTPUT_NAME}') to read KL divergence in; use cosine, "
            "top1-agreement or max-abs"
        )
    return max(means)


# Metric name -> (how it is read from the per-output drift records, whether higher is better).
_METRICS: dict[str, tuple[Callable[[list[dict]], float], bool]] = {
    "cosine": (lambda drifts: min(d["cosine"] for d in drifts), True),
    "top1-agreement": (
        lambda drifts: min(
            (d["top1_agreement"] for d in drifts if d["top1_agreement"] is not None),
            default=float("nan"),
        ),
        True,
    ),
    "max-abs": (lambda drifts: max(d["max_abs"] for d in drifts), False),
    "kl": (_worst_kl, False),
}


@dataclass(frozen=True)
class DriftBudget:
    """`metric` must stay at or above `value` (cosine, top-1 agreement) or at or below it
    (max-abs, kl: the mean KL divergence of a `logits` output)."""

    metric: str
    value: float

    @classmethod
    def parse(cls, text: str) -> DriftBudget:
        match = re.fullmatch(r"([a-z0-9-]+)=([0-9.eE+-]+)", text.strip())
        if match is None:
            raise AsicperfError(f"--max-drift {text}: expected METRIC=VALUE, e.g. cosine=0.999")
        metric, value = match.group(1), match.group(2)
        if metric not in _METRICS:
            known = ", ".join(_METRICS)
            raise AsicperfError(f"--max-drift {text}: unknown metric '{metric}' ({known})")
        try:
            return cls(metric, float(value))
        except ValueError:
            raise AsicperfError(f"--max-drift {text}: '{value}' is not a number") from None

    def measure(self, drifts: list[dict]) -> float:
        return _METRICS[self.metric][0](drifts)

    def holds(self, drifts: list[dict]) -> bool:
        measured = self.measure(drifts)
        higher_is_better = _METRICS[self.metric][1]
        return measured >= self.value if higher_is_better else measured <= self.value


@dataclass(frozen=True)
class LayerSensitivity:
    """The drift the pipeline causes when it may touch this one layer only."""

    node: str
    op_type: str
    drifts: tuple[dict, ...]

    def to_json(self) -> dict[str, object]:
        return {"node": self.node, "op_type": self.op_type, "drifts": list(self.drifts)}


class DriftProbe:
    """The FP32 model's outputs on a seeded batch, and any candidate's drift from them.

    `runner` runs the models: the reference path, unless the caller hands in one that runs a
    model holding ops the reference path lacks on the bound target (`passes.checked_run`). A
    model nothing can run is an error: a budget or a ranking without its drift is unverified."""

    def __init__(
        self,
        model: oir.Model,
        seed: int = 0,
        bindings: Mapping[str, int] | None = None,
        runner: ModelRunner | None = None,
    ):
        self.feeds = seeded_inputs(model, seed, bindings)
        self.runner = runner or ReferenceRunner()
        self.names = tuple(value.name or "" for value in model.graph.outputs)
        self.reference = self._outputs(model, "the input model")

    def drift(self, model: oir.Model) -> list[dict]:
        return self._drift(self._outputs(model, "the pipeline's output"))

    def check_metric(self, budget: DriftBudget) -> None:
        """Raise the metric's one-line error when the model's outputs cannot be read in it
        (KL without a vocabulary output), before any candidate runs."""
        budget.measure(self._drift(self.reference))

    def _drift(self, outputs: list[np.ndarray]) -> list[dict]:
        return drift_record(self.reference, outputs, self.names)

    def _outputs(self, model: oir.Model, what: str) -> list[np.ndarray]:
        run = self.runner.run(model, self.feeds)
        if run.outputs is None:
            raise AsicperfError(f"cannot measure the drift of {what}: {run.reason}")
        return run.outputs


def touched_layers(model: oir.Model, passes: Sequence[Pass]) -> list[oir.Node]:
    """The nodes of `model` that the pipeline's layer-scoped passes change, in graph order."""
    if not any(is_layer_scoped(p) for p in passes):
        names = ", ".join(p.name for p in passes)
        raise AsicperfError(f"pipeline '{names}' has no pass that works layer by layer")
    result = run_pipeline(copy_model(model), list(passes))
    scoped_passes = {p.name: p for p in passes if is_layer_scoped(p)}
    changed = {
        node_id
        for record in result.records
        if record.pass_name in scoped_passes
        for change in record.changes
        for node_id in (*change.nodes, *change.replaces)
    }
    layer_ops: set[str] | None = set()
    for pass_ in scoped_passes.values():
        ops = pass_.config.layer_op_types()  # type: ignore[attr-defined]
        layer_ops = None if ops is None or layer_ops is None else layer_ops | ops
    return [
        node
        for node in model.graph
        if node.metadata_props.get(NODE_ID_KEY) in changed
        and (layer_ops is None or node.op_type in layer_ops)
    ]


def layer_sensitivity(
    model: oir.Model, passes: Sequence[Pass], probe: DriftProbe, budget: DriftBudget
) -> list[LayerSensitivity]:
    """Each touched layer alone through the pipeline, the most damaging (by `budget`'s metric)
    first."""
    probe.check_metric(budget)
    results = []
    for node in touched_layers(model, passes):
        node_id = node.metadata_props[NODE_ID_KEY]
        candidate = run_pipeline(copy_model(model), scoped(list(passes), only=(node_id,))).model
        results.append(LayerSensitivity(node_id, node.op_type, tuple(probe.drift(candidate))))
    higher_is_better = _METRICS[budget.metric][1]
    sign = 1.0 if higher_is_better else -1.0

    def damage(layer: LayerSensitivity) -> float:
        measured = budget.measure(list(layer.drifts))
        return sign * measured if not np.isnan(measured) else float("inf")

    return sorted(results, key=damage)


@dataclass(frozen=True)
class BudgetFit:
    """The pipeline's result with `milder` layers run at their pass's milder setting (4-bit
    weights at 8 bits) and `kept` layers left in FP32, each most sensitive first; the drift
    it ends with, and whether the budget holds."""

    result: PipelineResult
    kept: tuple[LayerSensitivity, ...]
    drifts: tuple[dict, ...]
    holds: bool
    milder: tuple[LayerSensitivity, ...] = ()

    def to_json(self, budget: DriftBudget) -> dict[str, object]:
        def listed(layers: tuple[LayerSensitivity, ...]) -> list[dict[str, object]]:
            return [
                {
                    **layer.to_json(),
                    "reason": f"alone it moves {budget.metric} to "
                    f"{budget.measure(list(layer.drifts)):.6g}",
                }
                for layer in layers
            ]

        return {
            "budget": {"metric": budget.metric, "value": budget.value},
            "holds": self.holds,
            "measured": budget.measure(list(self.drifts)),
            "kept_milder": listed(self.milder),
            "kept_fp32": listed(self.kept),
        }


def _has_milder(passes: Sequence[Pass]) -> bool:
    return any(
        is_layer_scoped(p) and p.config.milder() is not None  # type: ignore[attr-defined]
        for p in passes
    )


def fit_budget(
    model: oir.Model, passes: Sequence[Pass], budget: DriftBudget, probe: DriftProbe
) -> BudgetFit:
    """Run the pipeline; while the budget does not hold, move the next most sensitive layer to
    its pass's milder setting where the pass has one (4-bit weights at 8 bits), and once every
    layer is there, keep the next most sensitive out of the layer-scoped passes (FP32); run
    again each time. `model` is left unchanged."""
    ranking = layer_sensitivity(model, passes, probe, budget)
    steps = [("milder", layer) for layer in ranking] if _has_milder(passes) else []
    steps += [("kept", layer) for layer in ranking]
    placed: dict[str, list[LayerSensitivity]] = {"milder": [], "kept": []}
    while True:
        kept = tuple(placed["kept"])
        milder = tuple(layer for layer in placed["milder"] if layer not in kept)
        layers = {"skip": tuple(k.node for k in kept), "milder": tuple(m.node for m in milder)}
        result = run_pipeline(copy_model(model), scoped(list(passes), **layers))
        drifts = probe.drift(result.model)
        done = len(placed["milder"]) + len(kept)
        if budget.holds(drifts) or done == len(steps):
            return BudgetFit(result, kept, tuple(drifts), budget.holds(drifts), milder)
        where, layer = steps[done]
        placed[where].append(layer)
