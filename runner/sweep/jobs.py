"""Jobs of a sweep: one `runner bench` invocation each, named by a hash of what determines its
result (the model's fingerprint, the target with its options and installed version, pipeline,
batch size, scenario, settings, hardware), so a rerun recognizes work already done wherever it
ran, and a changed option is a new job rather than a stale result."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runner.sweep.resources import BENCH_SLOT, hardware_resource, target_resource
from targets.registry import describe
from targets.registry import discover as discover_targets
from zoo.cache import cached_path
from zoo.catalog import ZOO

Level = Literal["op", "model", "llm"]
ID_LENGTH = 16  # hex characters of the identity's sha256
UNKNOWN_VERSION = "?"  # a target not installed where the sweep is driven from


@dataclass(frozen=True)
class Job:
    """One benchmark run of a sweep: one `runner bench` invocation.

    At the op level `target` names a kernel provider (`runner bench --provider`), `suite` the
    suite and `model`, `batch` and `scenario` are None. `settings` are further `runner bench`
    options by name (`min_duration` is `--min-duration`), only those the sweep file sets."""

    id: str
    run: int  # index of the [[runs]] table it came from (0-based)
    level: Level
    model: str | None
    suite: str | None
    target: str  # with its options, canonical: "onnxruntime{threads=2}"
    pipeline: str  # "" for none
    batch: int | None
    scenario: str | None  # None: the workload's default
    hardware: str | None  # hardware-database slug the node must have; None: any node
    settings: Mapping[str, Any] = field(hash=False)

    @property
    def target_name(self) -> str:
        """The target (or provider) without its options: what a node advertises."""
        return self.target.partition("{")[0]

    def identity(self) -> dict[str, Any]:
        """What determines the result, and so the id."""
        return {
            "level": self.level,
            "model": None if self.model is None else model_fingerprint(self.model),
            "suite": None if self.suite is None else suite_fingerprint(self.suite),
            "target": self.target,
            "target_version": installed_version(self.level, self.target_name),
            "pipeline": self.pipeline,
            "batch": self.batch,
            "scenario": self.scenario,
            "settings": dict(self.settings),
            "hardware": self.hardware,
        }

    def bench_argv(self, out: Path) -> list[str]:
        """The `runner bench` arguments (after the program name) that run this job into `out`
        and print its result document."""
        argv = ["bench", "--level", self.level]
        if self.level == "op":
            argv += ["--suite", str(self.suite), "--provider", self.target]
        else:
            argv += ["--model", str(self.model), "--target", self.target]
            argv += ["--pipeline", self.pipeline, "--batch", str(self.batch)]
            if self.scenario is not None:
                argv += ["--scenario", self.scenario]
        for name, value in self.settings.items():
            argv += ["--" + name.replace("_", "-"), _option_text(value)]
        return [*argv, "--out", str(out), "--json"]

    def resources(self) -> dict[str, float]:
        """The Ray custom resources the job's task asks for: a bench slot (so no other timed
        run shares the machine), its target, and its hardware when the sweep names one."""
        wanted = {BENCH_SLOT: 1.0, target_resource(self.target_name): 1.0}
        if self.hardware is not None:
            wanted[hardware_resource(self.hardware)] = 1.0
        return wanted

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "settings": dict(self.settings)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any], where: str) -> Job:
        """The job `to_json` wrote (its id as written, not recomputed: the id says which run
        produced the folder); a ValueError naming `where` and the missing fields otherwise."""
        names = [spec.name for spec in dataclasses.fields(cls)]
        missing = [name for name in names if name not in document]
        if missing:
            raise ValueError(f"{where}: not a job: no {', '.join(missing)}")
        return cls(**{name: document[name] for name in names})


def new_job(
    run: int,
    level: Level,
    *,
    target: str,
    model: str | None = None,
    suite: str | None = None,
    pipeline: str = "",
    batch: int | None = None,
    scenario: str | None = None,
    hardware: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Job:
    """A job with its id computed from its identity."""
    given = dict(settings or {})
    draft = Job("", run, level, model, suite, target, pipeline, batch, scenario, hardware, given)
    return dataclasses.replace(draft, id=job_id(draft.identity()))


def job_id(identity: Mapping[str, Any]) -> str:
    """The first 16 hex characters of the sha256 of the identity's canonical JSON: the same
    in every process and on every machine."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:ID_LENGTH]


def model_fingerprint(model: str) -> str:
    """A zoo model built from code by its build recipe (name, builder version, options: the
    key its cached file is named by, so no build is needed); a model file by its bytes."""
    entry = ZOO.get(model)
    if entry is not None and entry.file is None:
        return f"zoo:{cached_path(entry).stem}"
    return file_fingerprint(entry.file if entry is not None else Path(model))


def suite_fingerprint(suite: str) -> str:
    """A shipped suite (by name) or a suite file, by its bytes."""
    from microbench.suite import SUITES_DIR, shipped_suites  # numpy: only for op-level jobs

    path = SUITES_DIR / f"{suite}.toml" if suite in shipped_suites() else Path(suite)
    return file_fingerprint(path)


def file_fingerprint(path: Path) -> str:
    """`sha256:<hex>` of the file's bytes, read once per process while it is unchanged (every
    job of a model file hashes it)."""
    status = path.stat()
    return _file_digest(path.resolve(), status.st_size, status.st_mtime_ns)


@functools.cache
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    with path.open("rb") as stream:
        return "sha256:" + hashlib.file_digest(stream, "sha256").hexdigest()


@functools.cache
def installed_version(level: Level, name: str) -> str | None:
    """The target's version as installed here, UNKNOWN_VERSION where it is not; None at the op
    level, whose kernel providers declare no version."""
    if level == "op":
        return None
    entry = discover_targets().get(name)
    return (describe(entry).version if entry else "") or UNKNOWN_VERSION


def _option_text(value: object) -> str:
    """A setting as its option's text: a list as "128,512"."""
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)
