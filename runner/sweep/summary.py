"""A sweep's summary: every job's record, where the jobs ran, what failed and why, and what the
distribution cost (`sweep.json` in the results folder, and the closing tables of `runner sweep`).

The scheduling overhead of a job is its driver-observed time minus its benchmark's own wall
time (JobRecord.overhead_seconds: from the moment the job could start, its submission or its
node's slot coming free, to its result arriving at the driver). It is summarized over the done
jobs this run produced: jobs taken over from an earlier run (`--resume`) and failed ones are left
out, a failure's time being the failure's, not the scheduler's.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.console import console, table
from runner.sweep.job_record import STATUSES, JobRecord, NodeRef

SCHEMA = "asicperf.sweep/1"
SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class SweepSummary:
    """`records`: the jobs with an outcome, in the sweep's order (those taken over from an
    earlier run included, their ids in `resumed`); `pending`: the jobs without one, when the
    driver was interrupted (or while the sweep runs, in sweep.json)."""

    out: Path
    address: str  # "local" (a Ray instance inside the driver) or the cluster's address
    records: tuple[JobRecord, ...]
    resumed: tuple[str, ...]
    pending: tuple[str, ...]
    wall_seconds: float
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(record.status == status for record in self.records)

    def nodes(self) -> list[tuple[NodeRef, Counter[str]]]:
        """Each node that produced a record, with its records' statuses counted."""
        refs: dict[str, NodeRef] = {}
        counts: dict[str, Counter[str]] = {}
        for record in self.records:
            if record.node is not None:
                refs[record.node.id] = record.node
                counts.setdefault(record.node.id, Counter())[record.status] += 1
        ordered = sorted(refs.values(), key=lambda node: (node.hostname, node.ip, node.id))
        return [(node, counts[node.id]) for node in ordered]

    def overheads(self) -> list[float]:
        """The scheduling overhead of each done job this run produced, in seconds."""
        resumed = set(self.resumed)
        return [
            record.overhead_seconds
            for record in self.records
            if record.status == "done"
            and record.job_id not in resumed
            and record.overhead_seconds is not None
        ]

    def to_json(self) -> dict[str, Any]:
        overheads = self.overheads()
        return {
            "schema": SCHEMA,
            "out": str(self.out),
            "address": self.address,
            "interrupted": self.interrupted,
            "wall_seconds": self.wall_seconds,
            "counts": {
                **{status: self.count(status) for status in STATUSES},
                "resumed": len(self.resumed),
                "pending": len(self.pending),
            },
            "nodes": [
                {"node": node.to_json(), **{status: counts[status] for status in STATUSES}}
                for node, counts in self.nodes()
            ],
            "overhead_seconds": {
                "jobs": len(overheads),
                "median": statistics.median(overheads) if overheads else None,
                "max": max(overheads) if overheads else None,
            },
            "jobs": [record.to_json() for record in self.records],
            "resumed": list(self.resumed),
            "pending": list(self.pending),
        }


def describe_job(job: dict[str, Any]) -> str:
    """A job in a few words: what it runs, on what, how."""
    what = job.get("model") or job.get("suite") or "?"
    parts = [str(job.get("level")), str(what), str(job.get("target"))]
    parts.append(f"pipeline {job.get('pipeline') or 'none'}")
    if job.get("batch") is not None:
        parts.append(f"batch {job['batch']}")
    if job.get("hardware"):
        parts.append(f"on {job['hardware']}")
    return " ".join(parts)


def print_summary(summary: SweepSummary) -> None:
    """The closing tables: jobs per node, failures with their reasons, jobs no node could
    run, then the totals, the wall time and the scheduling overhead per job."""
    out = console()
    nodes = table("jobs per node", "node", *STATUSES[:2])
    for node, counts in summary.nodes():
        nodes.add_row(node.label(), *(str(counts[status]) for status in STATUSES[:2]))
    out.print(nodes)
    for status, title in (("failed", "failed jobs"), ("unschedulable", "jobs no node can run")):
        records = [record for record in summary.records if record.status == status]
        if records:
            listing = table(title, "job", "what", "reason")
            for record in records:
                listing.add_row(record.job_id, describe_job(dict(record.job)), record.reason or "")
            out.print(listing)
    out.print(_totals(summary), markup=False)
    out.print(f"results: {summary.out}", markup=False)


def _totals(summary: SweepSummary) -> str:
    counts = [f"{summary.count(status)} {status}" for status in STATUSES]
    counts.append(f"{len(summary.resumed)} from an earlier run")
    if summary.pending:
        counts.append(f"{len(summary.pending)} not run (interrupted)")
    jobs = len(summary.records) + len(summary.pending)
    line = f"{jobs} jobs: {', '.join(counts)}; wall time {summary.wall_seconds:.1f} s"
    overheads = summary.overheads()
    if overheads:
        median, worst = statistics.median(overheads), max(overheads)
        line += f"; scheduling overhead per job: median {median:.3f} s, max {worst:.3f} s"
    return line
