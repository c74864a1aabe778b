"""The bench flow per batch size: load with the batch bound (static shapes), apply the pipeline,
compile in this process, then hand the compiled session to MLPerf LoadGen (runner/loadgen),
which warms it up, issues the scenario's queries, times them and judges the run; then check
the outputs against the reference target and, on the first batch size, measure the task
accuracy (LoadGen's accuracy run over the task's data set, or drift on the seeded batch for a
model without one). Completed batch sizes are written at once; `resume` skips them.

LoadGen sees one System Under Test (the compiled session) and one Query Sample Library: the
seeded input batch, one LoadGen sample of b items. Its figures and verdict are copied into the
result (loadgen_result.py), its logs kept in `<result folder>/loadgen/batch-<b>/` (and
`batch-<b>-accuracy/`), or under `--loadgen-log`. What LoadGen does not do stays here: the
best batch size under the latency bound, per-batch files and --resume (results.py), progress,
coverage, drift, the pipeline's audit, and the session's own time per batch (stats.py)."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
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
from runner.bench.loadgen_result import latency_stats_of, loadgen_record, log_references, verdict
from runner.bench.results import (
    batch_choice,
    best_batch,
    coverage_of,
    load_completed,
    write_batch,
)
from runner.bench.run_key import RunKey
from runner.bench.stats import latency_stats
from runner.loadgen.log_files import LoadgenLogFiles
from runner.loadgen.progress import Tick
from runner.loadgen.run import run_loadgen
from runner.loadgen.settings import LoadgenSettings
from runner.loadgen.task_accuracy import accuracy_under_loadgen
from runner.report.environment import environment
from runner.results.files import RESULT_FILE, write_result
from runner.results.model import (
    AccuracyRecord,
    AuditSummary,
    BatchResult,
    Coverage,
    DriftRecord,
    ModelResult,
    PrecisionRecord,
    TargetInfoRecord,
)
from targets.api import Session
from targets.executable import Executable, compile_model
from targets.precision_choice import precision_of
from targets.reference_fallback import TargetFallback
from targets.registry import get_target
from zoo.accuracy import DriftReport, Run, drift_report
from zoo.task_data import task_data
from zoo.workload import Workload

BATCH_DIM = "batch"
REFERENCE_TARGET = "reference"
LOADGEN_FOLDER = "loadgen"  # LoadGen's logs, under the result folder unless placed elsewhere
LOADGEN_VERSION = f"mlcommons-loadgen {version('mlcommons-loadgen')}"


def loadgen_settings(workload: Workload, seed: int) -> LoadgenSettings:
    """The workload's LoadGen settings, checked: a combination LoadGen would refuse or ignore
    is a one-line error, so the caller builds them before any work."""
    return LoadgenSettings(
        scenario=workload.scenario,
        min_duration_s=workload.min_duration_s,
        min_queries=workload.min_queries,
        latency_bound_ms=workload.latency_bound_ms,
        server_qps=workload.server_qps,
        latency_percentile=workload.latency_percentile,
        samples_per_query=workload.samples_per_query,
        seed=seed,
    )


@dataclass(frozen=True)
class BenchPlan:
    """What to measure: the workload (with the user's overrides), the model file it names, its
    LoadGen settings (`loadgen_settings(workload, seed)`) and where LoadGen's logs go (None:
    `<result folder>/loadgen`)."""

    workload: Workload
    model_path: Path
    settings: LoadgenSettings
    command: tuple[str, ...] = ()  # the invocation, recorded in the result
    loadgen_log: Path | None = None

    @property
    def accuracy_rules(self) -> dict[str, Any]:
        w = self.workload
        return {
            "metric": w.accuracy_metric,
            "threshold": w.accuracy_threshold,
            "dataset_fraction": w.dataset_fraction,
        }


class BatchProgress(Protocol):
    """Progress per batch size, so the command can draw bars without the engine knowing how."""

    def compiling(self, batch_size: int) -> None: ...
    def timing(self, batch_size: int, fraction: float) -> None: ...
    def scoring(self, batch_size: int, fraction: float) -> None: ...  # the accuracy run
    def finished(self, result: BatchResult) -> None: ...


@dataclass(frozen=True)
class Folders:
    """Where a run writes: the result folder (result.json, batch files) and the root of
    LoadGen's logs, one folder per LoadGen run under it."""

    results: Path
    loadgen: Path

    def performance_logs(self, batch_size: int) -> Path:
        return self.loadgen / f"batch-{batch_size}"

    def accuracy_logs(self, batch_size: int) -> Path:
        return self.loadgen / f"batch-{batch_size}-accuracy"


def bench(plan: BenchPlan, folder: Path, resume: bool, progress: BatchProgress) -> ModelResult:
    """Measure every batch size not already done, and return (and write) the result."""
    workload = plan.workload
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
    settings = dataclasses.asdict(plan.settings)
    key = RunKey(
        ir_fingerprint=fingerprint(unbound),
        target=workload.target_spec,
        pipeline=pipeline or None,
        scenario=workload.scenario,
        loadgen=LOADGEN_VERSION,
        settings=settings,
        accuracy=plan.accuracy_rules,
    )
    folders = Folders(folder, plan.loadgen_log or folder / LOADGEN_FOLDER)
    done = load_completed(folder, key, sizes) if resume else {}
    for size in sizes:
        if size not in done:
            # accuracy on the first batch size only: a data set pass per size costs too much
            first = size == sizes[0]
            compiled = _compile(plan, pipeline, size, with_audit=first, progress=progress)
            done[size] = _measure(plan, compiled, folders, with_accuracy=first, progress=progress)
            write_batch(folder, key, done[size])
        progress.finished(done[size])
    batches = [done[size] for size in sizes]
    info = target.info()
    bound = workload.latency_bound_ms
    result = ModelResult(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        environment=environment(list(plan.command), plan.settings.seed),
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
        settings=settings,
        compile_s=sum(b.compile_s or 0.0 for b in batches),
        batches=tuple(batches),
        best_batch=best_batch(batches, bound, workload.scenario),
        latency_bound_ms=bound,
        batch_choice=batch_choice(batches, bound, workload.scenario),
        accuracy=batches[0].accuracy,
        drift=dataclasses.replace(batches[0].drift, batch_size=batches[0].batch_size),
        precision=batches[0].precision,
    )
    write_result(folder / RESULT_FILE, result)
    return result


@dataclass(frozen=True)
class _Compiled:
    """One batch size ready to measure: the target's session, the seeded batch it runs and
    the reference's outputs for that batch."""

    batch_size: int
    session: Session
    feeds: Mapping[str, np.ndarray]
    expected: list[np.ndarray]
    compile_s: float
    audit: AuditSummary | None
    coverage: Coverage
    precision: PrecisionRecord | None


def precision_record(executable: Executable) -> PrecisionRecord | None:
    """The precision the target says it computed in, as the result stores it; None when its
    compile record carries none (a target that always runs the model's own type)."""
    choice = precision_of(executable.record.to_json())
    return None if choice is None else PrecisionRecord.from_json(choice.to_json(), "precision")


def _compile(
    plan: BenchPlan,
    pipeline_spec: str,
    batch_size: int,
    *,
    with_audit: bool,
    progress: BatchProgress,
) -> _Compiled:
    """The model loaded at the batch size, the reference's outputs on the seeded batch, the
    pipeline applied (audited on the first batch size) and the target's session."""
    workload = plan.workload
    seed = plan.settings.seed
    progress.compiling(batch_size)
    model = load_model(plan.model_path, bindings={BATCH_DIM: batch_size})
    feeds = seeded_inputs(model, seed, {BATCH_DIM: batch_size}, int_high=2)
    expected = _fp32_reference(model, batch_size, feeds)  # before the pipeline changes it
    target = get_target(workload.target)
    config = make_config(type(target), workload.target_options, kind="target")
    audit: AuditSummary | None = None
    if pipeline_spec:
        instruments: list[Instrument] = [VerifyAfterEachPass()]
        if with_audit:  # per-pass drift on the first batch size, like the accuracy
            # the target checks the ops its passes emitted that the reference path lacks
            runner = TargetFallback(workload.target, config, batch_size)
            bindings = {BATCH_DIM: batch_size}
            instruments.append(NumericCheck(seed, bindings, runner=runner))
        pipeline = run_pipeline(model, parse_pipeline(pipeline_spec), instruments)
        if with_audit:
            audit = AuditSummary.from_json(audit_summary(pipeline.records), "audit")
    start = time.perf_counter()
    executable = compile_model(target, model, config)
    compile_s = time.perf_counter() - start
    return _Compiled(
        batch_size=batch_size,
        session=executable.session(batch_size),
        feeds=feeds,
        expected=expected,
        compile_s=compile_s,
        audit=audit,
        coverage=coverage_of(executable.plan),
        precision=precision_record(executable),
    )


def _measure(
    plan: BenchPlan,
    compiled: _Compiled,
    folders: Folders,
    *,
    with_accuracy: bool,
    progress: BatchProgress,
) -> BatchResult:
    """LoadGen's performance run (its QSL: the one seeded batch), then drift on that batch and,
    with accuracy, the task metric."""
    size, session, feeds = compiled.batch_size, compiled.session, compiled.feeds
    run = run_loadgen(
        plan.settings,
        lambda index: session.run(feeds),
        batch_count=1,
        batch_size=size,
        log_dir=folders.performance_logs(size),
        tick=functools.partial(progress.timing, size),
    )
    performance, qps = run.performance, run.items_per_s
    assert performance is not None and qps is not None, "a performance run has figures"
    valid, why = verdict(run, performance)
    drift = drift_report(compiled.expected, [np.asarray(o) for o in session.run(feeds)])
    accuracy = None
    if with_accuracy:
        tick = functools.partial(progress.scoring, size)
        accuracy = _accuracy(plan, session.run, size, drift, folders, tick)
    timing = run.timing
    return BatchResult(
        batch_size=size,
        qps=qps,
        latency_ms=latency_stats_of(performance.latency_ms),
        valid=valid,
        why=why,
        compile_s=compiled.compile_s,
        queries=performance.query_count,
        duration_s=timing.duration_s,
        drift=DriftRecord.from_json(drift.to_json(), "drift"),
        accuracy=accuracy,
        latencies_ms=tuple(round(latency, 6) for latency in timing.query_latencies_ms),
        audit=compiled.audit,
        coverage=compiled.coverage,
        batch_ms=latency_stats([round(ms, 6) for ms in timing.batch_ms]),
        loadgen=loadgen_record(run, performance, folders.results),
        precision=compiled.precision,
    )


def _fp32_reference(
    model: oir.Model, batch_size: int, feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """The reference target's outputs for the model as loaded (FP32, before any pass), which
    every target and pipeline is judged against."""
    return compile_model(get_target(REFERENCE_TARGET), model).session(batch_size).run(feeds)


def _accuracy(
    plan: BenchPlan, run: Run, batch_size: int, drift: DriftReport, folders: Folders, tick: Tick
) -> AccuracyRecord | None:
    """The task metric from LoadGen's accuracy run over the workload's data set; for models
    judged by drift alone, the lowest output cosine against the reference, on the seeded
    batch (a model without a data set has nothing else to be judged on)."""
    workload = plan.workload
    threshold = workload.accuracy_threshold
    task = task_data(workload.model, batch_size, workload.dataset_fraction, threshold)
    if task is not None:
        log_dir = folders.accuracy_logs(batch_size)
        accuracy = accuracy_under_loadgen(task, run, plan.settings, log_dir, tick=tick)
        logs = log_references(LoadgenLogFiles(log_dir), folders.results, accuracy=True)
        return dataclasses.replace(
            AccuracyRecord.from_json(accuracy.to_json(), "accuracy"), logs=logs
        )
    if workload.accuracy_metric != "output-drift":
        return None
    cosine = min((d.cosine for d in drift.drift), default=1.0)
    return AccuracyRecord(
        metric="output-drift",
        value=cosine,
        samples=batch_size,
        threshold=threshold,
        passed=cosine >= threshold,
    )
