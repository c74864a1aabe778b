"""The bench flow per batch size: load with the batch bound (static shapes), apply the pipeline,
compile in this process, warm up, run the scenario, and check the outputs against the
reference target. Completed batch sizes are written at once; `resume` skips them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx_ir as oir

from ir.bindings import symbolic_dims
from ir.errors import AsicperfError
from ir.fingerprint import fingerprint
from ir.memory import check_fits_in_memory
from ir.model_io import load_model
from ir.seeded_inputs import seeded_inputs
from passes.audit import audit_summary
from passes.instruments import Instrument, NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import make_config, parse_pipeline
from passes.target_binding import bind_pipeline
from runner.bench.results import (
    RunKey,
    batch_choice,
    best_batch,
    coverage_of,
    load_completed,
    write_batch,
)
from runner.bench.scenarios import ScenarioSettings, run_scenario, verdict
from runner.bench.stats import latency_stats
from runner.report.environment import environment
from runner.results.files import RESULT_FILE, write_result
from runner.results.model import (
    AccuracyRecord,
    AuditSummary,
    BatchResult,
    DriftRecord,
    ModelResult,
    TargetInfoRecord,
)
from targets.executable import compile_model
from targets.reference_fallback import TargetFallback
from targets.registry import get_target
from zoo.accuracy import Accuracy, DriftReport, Run, drift_report, task_accuracy
from zoo.workload import Workload

BATCH_DIM = "batch"
WARMUP_QUERIES = 3
REFERENCE_TARGET = "reference"


@dataclass(frozen=True)
class BenchPlan:
    """What to measure: the workload (with the user's overrides) and the model file it names."""

    workload: Workload
    model_path: Path
    seed: int = 0
    command: tuple[str, ...] = ()  # the invocation, recorded in the result

    @property
    def settings(self) -> ScenarioSettings:
        w = self.workload
        return ScenarioSettings(
            w.scenario,
            w.min_duration_s,
            w.min_queries,
            w.latency_bound_ms,
            w.server_qps,
            seed=self.seed,
        )

    @property
    def accuracy_rules(self) -> dict[str, Any]:
        w = self.workload
        return {
            "metric": w.accuracy_metric,
            "threshold": w.accuracy_threshold,
            "dataset_fraction": w.dataset_fraction,
        }

    @property
    def target_spec(self) -> str:
        options = " ".join(f"{k}={v}" for k, v in sorted(self.workload.target_options.items()))
        return f"{self.workload.target}{{{options}}}" if options else self.workload.target


class BatchProgress(Protocol):
    """Progress per batch size, so the command can draw bars without the engine knowing how."""

    def compiling(self, batch_size: int) -> None: ...
    def timing(self, batch_size: int, fraction: float) -> None: ...
    def finished(self, result: BatchResult) -> None: ...


def bench(plan: BenchPlan, folder: Path, resume: bool, progress: BatchProgress) -> ModelResult:
    """Measure every batch size not already done, and return (and write) the result."""
    workload = plan.workload
    settings = plan.settings  # checks the scenario's fields (server rate, bound) before any work
    target = get_target(workload.target)
    make_config(type(target), workload.target_options, kind="target")  # fail before any work
    pipeline = bind_pipeline(workload.pipeline, workload.target)  # as the registry names it
    unbound = load_model(plan.model_path)
    sizes = workload.batch_sizes
    if sizes != (1,) and BATCH_DIM not in symbolic_dims(unbound):
        raise AsicperfError(
            f"{workload.model}: no input has a '{BATCH_DIM}' dimension, so only batch 1 applies"
        )
    largest = max(sizes)
    what = f"{workload.model} at batch {largest}"
    check_fits_in_memory(unbound, what, bindings={BATCH_DIM: largest})
    key = RunKey(
        fingerprint(unbound),
        plan.target_spec,
        pipeline or None,
        workload.scenario,
        settings.to_json(),
        plan.accuracy_rules,
    )
    done = load_completed(folder, key, sizes) if resume else {}
    for size in sizes:
        if size not in done:
            # accuracy on the first batch size only: a data set pass per size costs too much
            first = size == sizes[0]
            done[size] = _measure(plan, pipeline, size, with_accuracy=first, progress=progress)
            write_batch(folder, key, done[size])
        progress.finished(done[size])
    batches = [done[size] for size in sizes]
    info = target.info()
    result = ModelResult(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        environment=environment(list(plan.command), plan.seed),
        model=workload.model,
        ir_fingerprint=key.ir_fingerprint,
        target=key.target,
        pipeline=workload.pipeline or None,
        resolved_pipeline=key.pipeline,
        scenario=workload.scenario,
        target_info=TargetInfoRecord(
            name=info.name, version=info.version, device=info.device, hardware=info.hardware
        ),
        target_options=dict(workload.target_options),
        audit=batches[0].audit,
        workload=workload.to_json(),
        settings=settings.to_json(),
        compile_s=sum(b.compile_s or 0.0 for b in batches),
        batches=tuple(batches),
        best_batch=best_batch(batches, workload.latency_bound_ms),
        latency_bound_ms=workload.latency_bound_ms,
        batch_choice=batch_choice(batches, workload.latency_bound_ms),
        accuracy=batches[0].accuracy,
        drift=dataclasses.replace(batches[0].drift, batch_size=batches[0].batch_size),
    )
    write_result(folder / RESULT_FILE, result)
    return result


def _measure(
    plan: BenchPlan,
    pipeline_spec: str,
    batch_size: int,
    *,
    with_accuracy: bool,
    progress: BatchProgress,
) -> BatchResult:
    workload = plan.workload
    progress.compiling(batch_size)
    model = load_model(plan.model_path, bindings={BATCH_DIM: batch_size})
    feeds = seeded_inputs(model, plan.settings.seed, {BATCH_DIM: batch_size}, int_high=2)
    expected = _fp32_reference(model, batch_size, feeds)  # before the pipeline changes it
    target = get_target(workload.target)
    config = make_config(type(target), workload.target_options, kind="target")
    audit: AuditSummary | None = None
    if pipeline_spec:
        instruments: list[Instrument] = [VerifyAfterEachPass()]
        if with_accuracy:  # per-pass drift on the first batch size, like the accuracy
            # the target checks the ops its passes emitted that the reference path lacks
            runner = TargetFallback(workload.target, config, batch_size)
            bindings = {BATCH_DIM: batch_size}
            instruments.append(NumericCheck(plan.settings.seed, bindings, runner=runner))
        pipeline = run_pipeline(model, parse_pipeline(pipeline_spec), instruments)
        if with_accuracy:
            audit = AuditSummary.from_json(audit_summary(pipeline.records), "audit")
    start = time.perf_counter()
    executable = compile_model(target, model, config)
    compile_s = time.perf_counter() - start
    session = executable.session(batch_size)
    for _ in range(WARMUP_QUERIES):
        outputs = session.run(feeds)
    timing = run_scenario(
        plan.settings,
        lambda: session.run(feeds),
        batch_size,
        lambda fraction: progress.timing(batch_size, fraction),
    )
    latency = latency_stats(timing.latencies_ms)
    valid, why = verdict(plan.settings, timing, latency)
    queries = len(timing.latencies_ms)
    drift = drift_report(expected, [np.asarray(o) for o in outputs])
    accuracy = _accuracy(workload, session.run, batch_size, drift) if with_accuracy else None
    return BatchResult(
        batch_size=batch_size,
        qps=queries * batch_size / timing.duration_s,
        latency_ms=latency,
        valid=valid,
        why=why,
        compile_s=compile_s,
        queries=queries,
        duration_s=timing.duration_s,
        drift=DriftRecord.from_json(drift.to_json(), "drift"),
        accuracy=AccuracyRecord.from_json(accuracy.to_json(), "accuracy") if accuracy else None,
        latencies_ms=tuple(round(latency, 6) for latency in timing.latencies_ms),
        audit=audit,
        coverage=coverage_of(executable.plan),
    )


def _fp32_reference(
    model: oir.Model, batch_size: int, feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """The reference target's outputs for the model as loaded (FP32, before any pass), which
    every target and pipeline is judged against."""
    return compile_model(get_target(REFERENCE_TARGET), model).session(batch_size).run(feeds)


def _accuracy(workload: Workload, run: Run, batch_size: int, drift: DriftReport) -> Accuracy | None:
    """The task metric on the workload's data set; for models judged by drift alone, the
    lowest output cosine against the reference, on the seeded batch."""
    found = task_accuracy(
        workload.model, run, batch_size, workload.dataset_fraction, workload.accuracy_threshold
    )
    if found is not None or workload.accuracy_metric != "output-drift":
        return found
    cosine = min((d.cosine for d in drift.drift), default=1.0)
    threshold = workload.accuracy_threshold
    return Accuracy("output-drift", cosine, batch_size, threshold, passed=cosine >= threshold)
