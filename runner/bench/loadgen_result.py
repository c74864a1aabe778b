"""A LoadGen run as the fields of a batch result: LoadGen's figures and verdict copied, never
recomputed, with the reasons in LoadGen's words, and its logs referenced by paths relative to
the result's folder (so a result folder moved with its logs still finds them)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from runner.loadgen.log_files import LoadgenLogFiles
from runner.loadgen.performance import LoadgenLatency, LoadgenPerformance
from runner.loadgen.run import LoadgenRun
from runner.results.model import LatencyStats, LoadgenRecord


def latency_stats_of(latency: LoadgenLatency) -> LatencyStats:
    """LoadGen's figures as the result records them (the same fields, in milliseconds)."""
    return LatencyStats(**dataclasses.asdict(latency))


def verdict(run: LoadgenRun, performance: LoadgenPerformance) -> tuple[bool, str]:
    """LoadGen's verdict and why: the checks it failed (then its recommendation and errors),
    or, for a VALID run, the checks it met, worded as LoadGen's summary words them."""
    if not performance.valid:
        return False, "; ".join(performance.invalid_reasons) or "LoadGen: INVALID"
    return True, "; ".join(_checks_met(run, performance))


def _checks_met(run: LoadgenRun, performance: LoadgenPerformance) -> list[str]:
    settings = run.settings
    met = []
    if performance.overlatency_query_count is not None:  # Server: judged against the bound
        percentile = f"p{performance.target_latency_percentile * 100:g}"
        met.append(
            f"performance constraints satisfied: {percentile} within the "
            f"{settings.latency_bound_ms:g} ms bound ({performance.overlatency_query_count} of "
            f"{performance.query_count} queries over)"
        )
    met.append(f"min duration satisfied (min {settings.min_duration_s:g} s)")
    if performance.scenario == "Offline":  # its one query: the minimum counts samples
        batches = len(run.timing.batch_ms)
        met.append(f"min samples satisfied ({batches} batches, min {settings.min_queries})")
    else:
        count = performance.query_count
        met.append(f"min queries satisfied ({count} queries, min {settings.min_queries})")
    if performance.early_stopping:
        points = " ".join(p if p.endswith(".") else f"{p}." for p in performance.early_stopping)
        met.append(f"early stopping satisfied: {points}")
    return met


def loadgen_record(
    run: LoadgenRun, performance: LoadgenPerformance, result_folder: Path
) -> LoadgenRecord:
    return LoadgenRecord(
        scenario=performance.scenario,
        target_latency_percentile=performance.target_latency_percentile,
        early_stopping=performance.early_stopping,
        early_stopping_latency_ms=performance.early_stopping_latency_ms,
        overlatency_queries=performance.overlatency_query_count,
        errors=run.errors,
        warnings=run.warnings,
        logs=log_references(run.files, result_folder, accuracy=False),
    )


def log_references(
    files: LoadgenLogFiles, result_folder: Path, *, accuracy: bool
) -> tuple[str, ...]:
    """The logs worth reading, relative to the result's folder: the summary and the detail
    log, for an accuracy run the responses it logged, and the trace where LoadGen kept one
    (LLM performance runs: each sample's first token and completion). A performance run's
    accuracy log is an empty list, and an untraced run leaves an empty trace file."""
    wanted = [files.summary, files.detail] + ([files.accuracy] if accuracy else [])
    wanted.append(files.trace)
    return tuple(
        Path(os.path.relpath(path.absolute(), result_folder.absolute())).as_posix()
        for path in wanted
        if path.is_file() and path.stat().st_size > 0
    )
