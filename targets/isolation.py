"""Running a target in a child process, so a target that crashes (segfaults) or hangs fails
its own job with the reason, and the runner carries on with the next one."""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ir.errors import AsicperfError


@dataclass(frozen=True)
class TargetJob:
    """One model run on one target: what the child process needs."""

    target: str
    options: Mapping[str, str]
    model_path: Path
    feeds: Mapping[str, np.ndarray]
    batch_size: int = 1


@dataclass(frozen=True)
class JobResult:
    target: str
    ok: bool
    outputs: list[np.ndarray] | None = None
    error: str | None = None
    compile_record: Mapping[str, Any] | None = None
    info: Mapping[str, Any] | None = None
    run_ms: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def run_job(job: TargetJob) -> JobResult:
    """Compile and run in this process; user errors become a failed result."""
    from ir.model_io import load_model
    from passes.pipeline import make_config
    from targets.executable import compile_model
    from targets.registry import get_target

    try:
        target = get_target(job.target)
        config = make_config(type(target), job.options, kind="target")
        executable = compile_model(target, load_model(job.model_path), config)
        session = executable.session(job.batch_size)
        start = time.perf_counter()
        outputs = session.run(job.feeds)
        run_ms = (time.perf_counter() - start) * 1e3
    except AsicperfError as error:
        return JobResult(job.target, ok=False, error=str(error))
    return JobResult(
        job.target,
        ok=True,
        outputs=[np.asarray(output) for output in outputs],
        compile_record=executable.record.to_json(),
        info=target.info().to_json(),
        run_ms=run_ms,
    )


def _child(job: TargetJob, channel: Any) -> None:
    try:
        channel.send(run_job(job))
    except BaseException as error:  # report a bug in the target rather than vanish
        detail = traceback.format_exception_only(error)[-1].strip()
        channel.send(JobResult(job.target, ok=False, error=f"target raised {detail}"))
    finally:
        channel.close()


def run_isolated(job: TargetJob, timeout_s: float = 600.0) -> JobResult:
    """`run_job` in a fresh (spawned) process with a time limit."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(job, sender), daemon=True)
    process.start()
    sender.close()
    result: JobResult | None = None
    if receiver.poll(timeout_s):
        try:
            result = receiver.recv()
        except EOFError:  # the child died before it could answer
            result = None
    else:
        process.kill()
        process.join()
        return JobResult(job.target, ok=False, error=f"timed out after {timeout_s:g} s")
    process.join(timeout=10)
    if result is not None:
        return result
    code = process.exitcode
    if code is not None and code < 0:
        reason = f"crashed (signal {signal.Signals(-code).name})"
    else:
        reason = f"exited with status {code} without a result"
    return JobResult(job.target, ok=False, error=reason)
