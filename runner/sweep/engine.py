"""Running a sweep's jobs on Ray: each job a task that asks for a bench slot and its target (and
hardware), so Ray places it only where it can run and never beside another timed run; the
driver gathers the results as they arrive and writes each job's folder whole.

Without an address the driver starts a Ray instance inside its own process, offering this
machine's resources: a sweep needs no cluster to set up. With one it joins a running cluster,
whose nodes `runner node start` described.

Faults: a worker or node that dies mid-job is Ray's to retry (MAX_RETRIES, elsewhere if need
be); a benchmark that fails for its own reason returns its error and is not retried; a job no
live node can run is reported, never left pending; an interrupted driver leaves every finished
job's folder in place for `--resume`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ir.errors import AsicperfError, first_line
from ir.files import check_output_dir, write_text_atomically
from runner.bench_output import progress_bars
from runner.sweep.address import check_answers
from runner.sweep.job_folder import finished_records, write_job_folder
from runner.sweep.job_record import JobRecord, iso_utc
from runner.sweep.jobs import Job
from runner.sweep.ledger import LEDGER_NAME, AttemptLedger, LedgerEntry
from runner.sweep.placement import placement_problem
from runner.sweep.resources import node_resources
from runner.sweep.summary import SWEEP_FILE, SweepSummary
from runner.sweep.task import AttemptOutcome, Executor, run_attempt, run_bench

MAX_RETRIES = 3  # attempts after the first, for a worker or node that died
CONNECT_TIMEOUT_S = 30.0  # an --address that does not answer fails within this
PROBE_TIMEOUT_S = 5.0
RECHECK_S = 2.0  # how often pending jobs are checked against the live nodes
SUMMARY_EVERY_S = 1.0  # sweep.json is rewritten at most this often while jobs arrive
STDERR_FILE = "stderr.txt"  # a failed benchmark's stderr, beside its job.json
LOCAL = "local"


def run_sweep(
    jobs: Sequence[Job],
    *,
    address: str | None,
    out: Path,
    resume: bool,
    progress: bool,
    execute: Executor = run_bench,
) -> SweepSummary:
    """Run `jobs` (all of them, or with `resume` those whose folder in `out` is not done) and
    return the sweep's summary, also written to `out`/sweep.json. `execute` runs one job on a
    worker; the default runs `runner bench` in a child process."""
    began = time.monotonic()
    out = check_output_dir(out, "--out")
    earlier = finished_records(out, [job.id for job in jobs]) if resume else {}
    todo = [job for job in jobs if job.id not in earlier]
    where = address or LOCAL
    if not todo:
        return _Gathering(jobs, out, where, earlier, began, _ignore).save(interrupted=False)
    with connected(address), _bar(progress, len(jobs), len(earlier)) as advance:
        gather = _Gathering(jobs, out, where, earlier, began, advance)
        try:
            _run(todo, gather, execute)
        except BaseException:  # Ctrl-C above all: sweep.json says what is missing
            gather.save(interrupted=True)
            raise
        return gather.save(interrupted=False)


def _ignore(record: JobRecord) -> None:
    """No progress to show."""


class _Gathering:
    """The driver's side: the records so far, each written as its job's folder (and shown by
    `on_record`), and sweep.json kept up to date."""

    def __init__(
        self,
        jobs: Sequence[Job],
        out: Path,
        address: str,
        earlier: dict[str, JobRecord],
        began: float,
        on_record: Callable[[JobRecord], None],
    ) -> None:
        self.order = [job.id for job in jobs]
        self.out = out
        self.address = address
        self.records = dict(earlier)
        self.resumed = tuple(job_id for job_id in self.order if job_id in earlier)
        self.began = began
        self.on_record = on_record
        self.saved_at = 0.0

    def add(self, record: JobRecord, files: dict[str, bytes]) -> None:
        write_job_folder(self.out, record, files)
        self.records[record.job_id] = record
        self.on_record(record)
        if time.monotonic() - self.saved_at >= SUMMARY_EVERY_S:
            self.save(interrupted=False)

    def save(self, *, interrupted: bool) -> SweepSummary:
        summary = SweepSummary(
            out=self.out,
            address=self.address,
            records=tuple(self.records[i] for i in self.order if i in self.records),
            resumed=self.resumed,
            pending=tuple(i for i in self.order if i not in self.records),
            wall_seconds=time.monotonic() - self.began,
            interrupted=interrupted,
        )
        text = json.dumps(summary.to_json(), indent=2) + "\n"
        write_text_atomically(self.out / SWEEP_FILE, text)
        self.saved_at = time.monotonic()
        return summary


@dataclass(frozen=True)
class _Submitted:
    job: Job
    at: float  # time.time() on the driver


def _run(jobs: Sequence[Job], gather: _Gathering, execute: Executor) -> None:
    """Submit every job some live node can run, record the others, and gather results as they
    arrive until none is left."""
    ledger = _start_ledger()
    task = ray.remote(run_attempt)
    nodes = _live_nodes()
    pending: dict[ray.ObjectRef, _Submitted] = {}
    for job in jobs:
        problem = placement_problem(job.resources(), nodes)
        if problem is not None:
            gather.add(_unschedulable(job, problem), {})
            continue
        ref = task.options(
            resources=job.resources(),
            num_cpus=0,  # the bench slot is what a job holds exclusively
            max_retries=MAX_RETRIES,
            retry_exceptions=False,  # a job's own failure is returned, never raised
        ).remote(job, ledger, execute)
        pending[ref] = _Submitted(job, time.time())
    checked = time.monotonic()
    while pending:
        ready, waiting = ray.wait(list(pending), num_returns=1, timeout=RECHECK_S)
        arrived = time.time()
        if ready and waiting:  # the others that arrived meanwhile, without waiting for more
            ready += ray.wait(waiting, num_returns=len(waiting), timeout=0)[0]
        arrivals = [(ref, pending.pop(ref)) for ref in ready]
        entries = ray.get(ledger.entries.remote([submitted.job.id for _, submitted in arrivals]))
        for (ref, submitted), entry in zip(arrivals, entries, strict=True):
            gather.add(*_collect(ref, submitted, entry, arrived))
        if time.monotonic() - checked >= RECHECK_S:
            _drop_unplaceable(pending, gather)
            checked = time.monotonic()


def _start_ledger() -> Any:
    """The attempt ledger, on the driver's node: its clock is the driver's, and it must not
    go down with a worker node (Ray's soft affinity may place it on one)."""
    here = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(AttemptLedger)
        .options(
            name=LEDGER_NAME,
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        )
        .remote()
    )


def _live_nodes() -> list[dict[str, float]]:
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def _drop_unplaceable(pending: dict[ray.ObjectRef, _Submitted], gather: _Gathering) -> None:
    """Record as unschedulable, and cancel, the pending jobs that no live node can run any
    more (the nodes that could have left the cluster): Ray would keep them waiting."""
    nodes = _live_nodes()
    for ref, submitted in list(pending.items()):
        problem = placement_problem(submitted.job.resources(), nodes)
        if problem is not None:
            ray.cancel(ref)
            del pending[ref]
            gather.add(_unschedulable(submitted.job, problem, submitted.at), {})


def _collect(
    ref: ray.ObjectRef, submitted: _Submitted, entry: LedgerEntry, arrived: float
) -> tuple[JobRecord, dict[str, bytes]]:
    """The record and files of a job whose task ended: its outcome, or the error Ray gave up
    with (a worker or node died on every attempt, or the task itself broke)."""
    attempt_nodes = tuple(attempt.node.id for attempt in entry.attempts)
    try:
        outcome: AttemptOutcome = ray.get(ref)
    except ray.exceptions.RayError as error:
        cause = error.cause if isinstance(error, ray.exceptions.RayTaskError) else error
        last_node = entry.attempts[-1].node if entry.attempts else None
        record = JobRecord(
            job=submitted.job.to_json(),
            status="failed",
            reason=f"{type(cause).__name__}: {first_line(cause)}",
            node=last_node,
            attempts=len(attempt_nodes),
            attempt_nodes=attempt_nodes,
            submitted=iso_utc(submitted.at),
        )
        return record, {}
    could_start = max(submitted.at, entry.slot_freed_at or submitted.at)
    job_seconds = arrived - could_start
    done = outcome.exit_code == 0
    record = JobRecord(
        job=submitted.job.to_json(),
        status="done" if done else "failed",
        reason=outcome.reason,
        node=outcome.node,
        attempts=len(attempt_nodes),
        attempt_nodes=attempt_nodes,
        exit_code=outcome.exit_code,
        submitted=iso_utc(submitted.at),
        started=iso_utc(outcome.started),
        finished=iso_utc(outcome.finished),
        bench_seconds=outcome.bench_seconds,
        job_seconds=job_seconds,
        overhead_seconds=job_seconds - outcome.bench_seconds,
    )
    if done:
        return record, outcome.files
    return record, {STDERR_FILE: outcome.stderr.encode("utf-8")} if outcome.stderr else {}


def _unschedulable(job: Job, reason: str, submitted: float | None = None) -> JobRecord:
    when = None if submitted is None else iso_utc(submitted)
    return JobRecord(job=job.to_json(), status="unschedulable", reason=reason, submitted=when)


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[None]:
    """Ray, for the block: a local instance offering this machine's resources, or the cluster
    at `address`, joined within CONNECT_TIMEOUT_S or a one-line error."""
    if address is None:
        ray.init(address=LOCAL, resources=node_resources(), include_dashboard=False, **_QUIET)
    else:
        if address != "auto":
            check_answers(address, "--address", PROBE_TIMEOUT_S)
        _join_within(address)
    try:
        yield
    finally:
        ray.shutdown()


_QUIET: dict[str, Any] = {
    "logging_level": logging.ERROR,  # Ray's start-up notices would bury the progress bar
    "log_to_driver": False,  # the workers' output: a failed benchmark's is in its folder
}


def _join_within(address: str) -> None:
    """`ray.init(address)` given CONNECT_TIMEOUT_S: Ray retries a cluster that accepts
    connections but does not answer (a wrong port, a head still starting) for minutes. Run in
    a thread of its own to be bounded; only joining can be (Ray starts a local instance from
    the main thread alone)."""
    failures: list[Exception] = []

    def join() -> None:
        try:
            ray.init(address=address, **_QUIET)
        except Exception as error:  # Ray's, of any type: reported as one line below
            failures.append(error)

    thread = threading.Thread(target=join, name="ray-join", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if thread.is_alive():
        message = f"no Ray cluster answered in {CONNECT_TIMEOUT_S:g} s"
        raise AsicperfError(f"--address {address}: {message}")
    if failures:
        raise AsicperfError(f"--address {address}: {first_line(failures[0])}")


@contextlib.contextmanager
def _bar(shown: bool, total: int, done: int) -> Iterator[Callable[[JobRecord], None]]:
    """One progress bar for the sweep on stderr (when `shown`), advanced once per record; the
    jobs taken over from an earlier run count as done from the start."""
    if not shown:
        yield _ignore
        return
    counts = {"done": done, "failed": 0, "unschedulable": 0}
    with progress_bars(quiet=False, count=True) as bars:
        task = bars.add_task(_describe(counts), total=total, completed=done)

        def advance(record: JobRecord) -> None:
            counts[record.status] += 1
            bars.update(task, advance=1, description=_describe(counts))

        yield advance


def _describe(counts: dict[str, int]) -> str:
    return "sweep: " + ", ".join(
        f"{n} {status}" for status, n in counts.items() if n or status == "done"
    )
