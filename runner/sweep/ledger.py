"""The attempt ledger: a small Ray actor, one per sweep, on the driver's machine. Every attempt
of a job reports to it when it starts (which node, which worker process) and when it gives its
bench slot back, so the driver learns how many attempts a job took, where each ran, and when the
node it finished on became free for it: Ray's own retries are otherwise invisible to the
driver, which only sees the last attempt's return value.

Times are the ledger's clock, `time.time()` on the driver's machine, the clock the driver
measures submissions and arrivals on.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass

from runner.sweep.job_record import NodeRef

LEDGER_NAME = "asicperf-sweep-ledger"  # in the driver's own namespace: one per sweep


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job, as it reported itself at its start."""

    node: NodeRef
    pid: int  # the Ray worker process running it
    at: float  # when the ledger heard of it


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows of one job: its attempts in order, and when the node of the last
    one had last given a bench slot back before that attempt started (None: not since the
    sweep began)."""

    attempts: tuple[Attempt, ...]
    slot_freed_at: float | None


class AttemptLedger:
    def __init__(self) -> None:
        self._attempts: dict[str, list[Attempt]] = {}
        self._releases: dict[str, list[float]] = {}  # node id -> times, in order

    def started(self, job_id: str, node: NodeRef, pid: int) -> None:
        self._attempts.setdefault(job_id, []).append(Attempt(node, pid, time.time()))

    def released(self, node_id: str) -> None:
        self._releases.setdefault(node_id, []).append(time.time())

    def entries(self, job_ids: list[str]) -> list[LedgerEntry]:
        """`entry` of each job: one call for the results that arrived together."""
        return [self.entry(job_id) for job_id in job_ids]

    def entry(self, job_id: str) -> LedgerEntry:
        attempts = tuple(self._attempts.get(job_id, ()))
        if not attempts:
            return LedgerEntry((), None)
        last = attempts[-1]
        releases = self._releases.get(last.node.id, [])
        before = bisect.bisect_left(releases, last.at)
        return LedgerEntry(attempts, releases[before - 1] if before else None)
