"""`<sweep out>/<job id>/job.json`: what became of one job of a sweep, beside the files its
`runner bench` wrote. It says whether the job is done (so `--resume` skips it), why not, which
node produced it after how many attempts, and where its time went.

Times: `submitted` is the driver's clock; `started` and `finished` (the bench subprocess's run)
are the producing node's. Durations are measured on one clock each, so a node whose clock is
off skews no duration: `bench_seconds` on the node, `job_seconds` on the driver's machine (see
`job_seconds`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from runner.results.record import Record, ResultError

JOB_FILE = "job.json"
SCHEMA = "asicperf.sweep-job/1"
Status = Literal["done", "failed", "unschedulable"]
STATUSES: tuple[Status, ...] = ("done", "failed", "unschedulable")


@dataclass(frozen=True, kw_only=True)
class NodeRef(Record):
    """A Ray node as a person finds it again: Ray's node id, the host's name and address."""

    id: str
    hostname: str
    ip: str

    def label(self) -> str:
        return f"{self.hostname} ({self.ip}, {self.id[:8]})"


@dataclass(frozen=True, kw_only=True)
class JobRecord(Record):
    """One job's outcome. `attempt_nodes` lists the Ray node id of every attempt that started,
    in order: more than one means a worker or node died and Ray ran the job again.

    `job_seconds` is what the driver saw: from the moment the job could start (its submission,
    or the moment its node's previous job gave the bench slot back, whichever is later) to its
    result arriving at the driver. `overhead_seconds` is that minus `bench_seconds`, the bench
    subprocess's own wall time: Ray's dispatch, the worker's setup, returning the files, the
    driver noticing. Both are on the driver machine's clock (the attempt ledger runs there)."""

    job: Mapping[str, Any]  # the Job's to_json()
    status: str  # one of STATUSES
    reason: str | None = None  # one line, for failed and unschedulable jobs
    node: NodeRef | None = None  # the node that produced the result
    attempts: int = 0
    attempt_nodes: tuple[str, ...] = ()
    exit_code: int | None = None  # of the bench subprocess
    submitted: str | None = None  # ISO 8601, UTC
    started: str | None = None
    finished: str | None = None
    bench_seconds: float | None = None
    job_seconds: float | None = None
    overhead_seconds: float | None = None

    @classmethod
    def fixed_keys(cls) -> dict[str, str]:
        return {"schema": SCHEMA}

    @property
    def job_id(self) -> str:
        return str(self.job["id"])


def iso_utc(timestamp: float) -> str:
    """A `time.time()` value as ISO 8601 in UTC, to the microsecond (two jobs' intervals on one
    node are compared at that resolution)."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")


def read_job_record(folder: Path) -> JobRecord | None:
    """The record in `folder`/job.json, None if there is none; a ResultError if it is not one."""
    path = folder / JOB_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultError(f"{path}: not a job record ({error})") from None
    record = JobRecord.from_json(document, str(path))
    if not isinstance(record.job.get("id"), str):
        raise ResultError(f"{path}: field job.id is missing")
    if record.status not in STATUSES:
        raise ResultError(f"{path}: status {record.status!r} is not one of {', '.join(STATUSES)}")
    return record
