"""The remote side of a sweep: what one attempt of a job does on the node Ray placed it on.

It reports its start to the attempt ledger, runs the benchmark in a process of its own (as
`runner bench` does: a crash or a leak in a target cannot touch the worker), and returns the
files the benchmark wrote with how it ended. A benchmark that fails for its own reason (a bad
model, a target's refusal) is an ordinary outcome, returned, not raised: Ray retries only
system failures, a worker or node that died, and a job that cannot succeed is not run again.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from runner.sweep.job_record import NodeRef
from runner.sweep.jobs import Job

_ERROR_PREFIX = "runner: error: "
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class BenchRun:
    """How a benchmark process ended: its exit status and what it wrote on stderr."""

    exit_code: int
    stderr: str


Executor = Callable[[Job, Path], BenchRun]  # runs `job`, writing its results into the folder


@dataclass(frozen=True)
class AttemptOutcome:
    """What an attempt returns to the driver. `started` and `finished` are the node's
    `time.time()` around the benchmark; `bench_seconds` its monotonic wall time."""

    node: NodeRef
    exit_code: int
    reason: str | None  # one line when exit_code is not 0
    files: dict[str, bytes]  # path relative to the bench's --out -> contents
    stderr: str  # the benchmark's, when it failed (empty when it succeeded)
    started: float
    finished: float
    bench_seconds: float


def run_attempt(job: Job, ledger: Any, execute: Executor) -> AttemptOutcome:
    """One attempt of `job` on this worker (the function Ray runs as the job's task)."""
    node = NodeRef(
        id=ray.get_runtime_context().get_node_id(),
        hostname=socket.gethostname(),
        ip=ray.util.get_node_ip_address(),
    )
    ray.get(ledger.started.remote(job.id, node, os.getpid()))
    try:
        with tempfile.TemporaryDirectory(prefix="asicperf-sweep-") as scratch:
            folder = Path(scratch) / "out"
            started, clock = time.time(), time.monotonic()
            run = execute(job, folder)
            bench_seconds = time.monotonic() - clock
            finished = time.time()
            files = _folder_files(folder)
    finally:  # the slot is free again, whatever happened (a dead worker reports nothing)
        ray.get(ledger.released.remote(node.id))
    failed = run.exit_code != 0
    reason = failure_reason(run.exit_code, run.stderr) if failed else None
    stderr = run.stderr if failed else ""
    return AttemptOutcome(
        node, run.exit_code, reason, files, stderr, started, finished, bench_seconds
    )


def run_bench(job: Job, folder: Path) -> BenchRun:
    """`runner bench` for `job` in a child process, with this interpreter."""
    argv = [sys.executable, "-m", "runner.cli", *job.bench_argv(folder)]
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # --json's copy of result.json, which the folder holds
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    return BenchRun(done.returncode, done.stderr)


def _die_with_parent() -> None:
    """In the child, before exec: end when the worker ends. A worker killed mid-job must not
    leave its benchmark running beside the retry it is timing."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def failure_reason(exit_code: int, stderr: str) -> str:
    """The benchmark's own one-line error (its last `runner: error:` line), else how it ended
    and its last line of output (a traceback's last line names the exception)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(_ERROR_PREFIX)]
    if errors:
        return errors[-1].removeprefix(_ERROR_PREFIX)
    ended = f"exit status {exit_code}" if exit_code > 0 else f"killed by signal {-exit_code}"
    return f"{ended}: {lines[-1]}" if lines else ended


def _folder_files(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
