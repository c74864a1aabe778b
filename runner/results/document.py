"""What every result document has, whatever it measured: the schema version, its kind, when
it was written and the environment it ran in (host, OS, package versions, git revision,
command line, seed, thread settings), enough for someone else to reproduce a figure or see
why theirs differs. docs/results.md describes every field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from runner.results.record import Record, omitted_when_none

SCHEMA_NAME = "asicperf.result"
SCHEMA_VERSION = 4
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"


@dataclass(frozen=True, kw_only=True)
class Host(Record):
    cpu: str  # the model name
    cores: int | None
    threads: int | None
    flags: tuple[str, ...]  # ISA extensions
    memory_gib: float | None = None


@dataclass(frozen=True, kw_only=True)
class GitRevision(Record):
    """The asicperf checkout that ran, and whether it had local changes."""

    revision: str
    dirty: bool


@dataclass(frozen=True, kw_only=True)
class ThreadSettings(Record):
    cpu_count: int | None
    env: Mapping[str, str | None]  # the thread variables (OMP_NUM_THREADS, ...), None if unset


@dataclass(frozen=True, kw_only=True)
class Environment(Record):
    """Where a result was measured; None where a version 1 document never recorded it."""

    host: Host
    gpus: tuple[str, ...]  # `name, driver` per NVIDIA GPU
    os: str | None
    python: str | None
    packages: Mapping[str, str | None]  # name: version, None when not installed
    git: GitRevision | None  # None for an installed wheel
    command: tuple[str, ...] | None  # as typed
    seed: int | None
    threads: ThreadSettings | None


@dataclass(frozen=True, kw_only=True)
class ResultDocument(Record):
    """A whole result file; `KIND` says what it measured, and the document carries the schema
    version it was written in."""

    KIND: ClassVar[str]

    created: str | None  # UTC, ISO 8601
    environment: Environment
    migrated_from: str | None = omitted_when_none()  # the version it was upgraded from

    @classmethod
    def fixed_keys(cls) -> dict[str, str]:
        return {"schema": SCHEMA, "kind": cls.KIND}
