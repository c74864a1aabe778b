"""Sweep files: benchmark runs as cross products, one `[[runs]]` table each, read and checked
field by field as workload files are (zoo.workload_fields), then checked against what they name
(registered targets, zoo models, the hardware database) and against the workload each job will
run, so every mistake is one line naming the file, the run and the field before a job starts.

    name = "lab"                          # optional; default: the file's stem
    [[runs]]
    level = "model"                       # op | model | llm
    models = ["digits-cnn", "resnet50"]   # zoo names or .onnx paths (op level: suites)
    targets = ["onnxruntime", "tvm"]      # with options: "onnxruntime{threads=2}"
    pipelines = ["", "int8"]              # default [""]: none
    batch = [1, 8]                        # default: each model's workload's batch sizes
    scenario = "offline"                  # default: each workload's
    hardware = "nvidia-h200"              # default: any node

At the op level `targets` names kernel providers (`runner bench --provider`). Relative paths
are relative to the sweep file's folder.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from ir.errors import AsicperfError
from microbench.providers.registry import discover as discover_providers
from microbench.suite import load_suite, shipped_suites
from passes.pipeline import PipelineError, make_config, split_options
from runner.bench.engine import loadgen_settings
from runner.sweep.jobs import Job, Level, new_job
from targets.hardware.database import UnknownHardwareError
from targets.hardware.database import get as hardware_spec
from targets.plugins import PluginEntry
from targets.registry import discover as discover_targets
from zoo import workload_fields as fields
from zoo.catalog import ZOO
from zoo.llm_workload import default_llm_workload, llm_overrides
from zoo.workload import Scenario, default_workload

HOST = "host"  # the hardware of a node's own CPU, which is in no database
ALL_LEVELS: tuple[Level, ...] = get_args(Level)
LOADGEN_LEVELS: tuple[Level, ...] = ("model", "llm")


class SweepError(AsicperfError):
    """A sweep file that cannot be read, or a run with a bad field."""


@dataclass(frozen=True)
class Run:
    """One `[[runs]]` table, every field checked. Fields from `seed` on are `runner bench`
    options by name (`min_duration` is `--min-duration`); None: the workload's."""

    level: Level
    targets: tuple[str, ...]
    models: tuple[str, ...] = ()
    suites: tuple[str, ...] = ()
    pipelines: tuple[str, ...] = ("",)
    batch: tuple[int, ...] = ()  # empty: each model's workload's batch sizes
    scenario: str | None = None
    hardware: str | None = None
    seed: int | None = None
    min_duration: float | None = None
    min_queries: int | None = None
    server_qps: float | None = None
    latency_bound: float | None = None
    prompt_len: tuple[int, ...] | None = None
    gen_len: int | None = None
    rate: float | None = None
    ttft_bound: float | None = None
    tpot_bound: float | None = None
    min_time: float | None = None
    max_time: float | None = None

    def settings(self) -> dict[str, Any]:
        """The `runner bench` options this run sets, as JSON values."""
        values = {name: getattr(self, name) for name in SETTINGS}
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in values.items()
            if value is not None
        }


# The levels each field applies to; a field given for another level is refused, not ignored.
APPLIES_TO: dict[str, tuple[Level, ...]] = {
    "level": ALL_LEVELS,
    "targets": ALL_LEVELS,
    "models": LOADGEN_LEVELS,
    "suites": ("op",),
    "pipelines": LOADGEN_LEVELS,
    "batch": LOADGEN_LEVELS,
    "scenario": LOADGEN_LEVELS,
    "hardware": ALL_LEVELS,
    "seed": ALL_LEVELS,
    "min_duration": LOADGEN_LEVELS,
    "min_queries": LOADGEN_LEVELS,
    "server_qps": ("model",),
    "latency_bound": ("model",),
    "prompt_len": ("llm",),
    "gen_len": ("llm",),
    "rate": ("llm",),
    "ttft_bound": ("llm",),
    "tpot_bound": ("llm",),
    "min_time": ("op",),
    "max_time": ("op",),
}
_FIELD_NAMES = [spec.name for spec in dataclasses.fields(Run)]
SETTINGS = tuple(_FIELD_NAMES[_FIELD_NAMES.index("seed") :])  # `runner bench` options by name
# Settings that are model-level workload fields, and the field each sets.
_WORKLOAD_FIELDS = {
    "min_duration": "min_duration_s",
    "min_queries": "min_queries",
    "server_qps": "server_qps",
    "latency_bound": "latency_bound_ms",
}


@dataclass(frozen=True)
class Sweep:
    """A checked sweep file: its runs and, per run, each model's batch sizes (the run's, else
    its workload's)."""

    path: Path
    name: str
    runs: tuple[Run, ...]
    batch_sizes: tuple[Mapping[str, tuple[int, ...]], ...]

    def jobs(self) -> list[Job]:
        """The runs' cross products in file order (model or suite, target, pipeline, batch
        size), each job once: a job two runs both name keeps the first run's index."""
        jobs: dict[str, Job] = {}
        for index, run in enumerate(self.runs):
            for job in _expand(index, run, self.batch_sizes[index]):
                jobs.setdefault(job.id, job)
        return list(jobs.values())


def _expand(index: int, run: Run, batch_sizes: Mapping[str, tuple[int, ...]]) -> list[Job]:
    settings = run.settings()
    if run.level == "op":
        return [
            new_job(
                index, "op", target=target, suite=suite, hardware=run.hardware, settings=settings
            )
            for suite in run.suites
            for target in run.targets
        ]
    return [
        new_job(
            index,
            run.level,
            target=target,
            hardware=run.hardware,
            settings=settings,
            model=model,
            pipeline=pipeline,
            batch=batch,
            scenario=run.scenario,
        )
        for model in run.models
        for target in run.targets
        for pipeline in run.pipelines
        for batch in batch_sizes[model]
    ]


def load_sweep(path: Path) -> Sweep:
    """The sweep in a TOML file, every run checked."""
    data = _read(path)
    for key in data:
        if key not in ("name", "runs"):
            raise SweepError(f"{path}: '{key}' is not a sweep field (known: name, runs)")
    name = path.stem
    if "name" in data:
        try:
            name = fields.name(data["name"])
        except fields.FieldError as error:
            raise SweepError(f"{path}: 'name' {error}") from None
    tables = data.get("runs")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise SweepError(f"{path}: needs at least one [[runs]] table")
    runs, batch_sizes = [], []
    for index, table in enumerate(tables):
        place = f"{path}: runs[{index}]"
        run = _parse_run(place, table, path.parent)
        runs.append(run)
        batch_sizes.append(_check_run(place, run, table))
    return Sweep(path, name, tuple(runs), tuple(batch_sizes))


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SweepError(f"{path}: cannot read the sweep file: {error.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SweepError(f"{path}: not valid TOML: {error}") from None


def _parse_run(place: str, table: Mapping[str, object], folder: Path) -> Run:
    """The run's fields, each checked on its own (unknown, missing, wrong type or value); the
    place stands for the file in the messages, so they name the run as well."""
    try:
        return Run(**fields.parse_fields(Path(place), table, Run, _checks(folder), "a run"))
    except fields.WorkloadError as error:
        raise SweepError(str(error)) from None


def _check_run(place: str, run: Run, table: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    """The run against its level, what it names and the workload each model runs with; each
    model's batch sizes."""
    for key in table:
        if run.level not in APPLIES_TO[key]:
            raise SweepError(f"{place}: '{key}' does not apply to level {run.level}")
    items = "suites" if run.level == "op" else "models"
    if not getattr(run, items):
        raise SweepError(f"{place}: '{items}' is missing (level {run.level} needs it)")
    for target in run.targets:
        problem = _target_problem(run.level, target)
        if problem is not None:
            raise SweepError(f"{place}: 'targets' {problem}")
    if run.level == "op":
        return {}
    workloads = {model: _workload_batches(place, run, model) for model in run.models}
    return {model: run.batch or batches for model, batches in workloads.items()}


def _target_problem(level: Level, spec: str) -> str | None:
    """Why `spec` names no target (op level: kernel provider) that can run here or on another
    node: an unregistered name or a bad option. A registered one that is unavailable here is
    fine, as it may run on another node."""
    name, options = split_options(spec, spec)
    kind = "provider" if level == "op" else "target"
    registered = _registered(kind)
    if name not in registered:
        return f"names no registered {kind} {name!r} (known: {', '.join(registered)})"
    plugin = registered[name].plugin_type
    if level == "op" and options:
        return f"{spec!r}: a kernel provider takes no options"
    if plugin is not None and options:
        try:
            make_config(plugin, options, kind="target")
        except PipelineError as error:
            return str(error)
    return None


@functools.cache
def _registered(kind: str) -> Mapping[str, PluginEntry[Any]]:
    return discover_providers() if kind == "provider" else discover_targets()


def _workload_batches(place: str, run: Run, model: str) -> tuple[int, ...]:
    """The batch sizes of the workload `runner bench` would run `model` with, after checking
    that workload with the run's scenario and settings as `runner bench` does (a server run
    needs its arrival rate and bounds, an LLM run has no multi-stream): the model's own
    workload, or a refusal when the model is for the other level."""
    batches = _llm_batches if run.level == "llm" else _model_batches
    try:
        return batches(run, model)
    except _NotForLevel as error:
        raise SweepError(f"{place}: 'models' {model!r}: {error}") from None
    except AsicperfError as error:
        raise SweepError(f"{place}: model {model!r} with this run's settings: {error}") from None


class _NotForLevel(AsicperfError):
    """A model the run's level does not measure (a text generator at the model level)."""


def _model_batches(run: Run, model: str) -> tuple[int, ...]:
    try:
        workload = default_workload(model)
    except AsicperfError as error:
        raise _NotForLevel(str(error)) from None
    if run.scenario is not None:
        workload = workload.in_scenario(run.scenario)
    given = {field: getattr(run, name) for name, field in _WORKLOAD_FIELDS.items()}
    workload = dataclasses.replace(
        workload, **{field: value for field, value in given.items() if value is not None}
    )
    loadgen_settings(workload, run.seed or 0)
    return workload.batch_sizes


def _llm_batches(run: Run, model: str) -> tuple[int, ...]:
    try:
        workload = default_llm_workload(model)
    except AsicperfError as error:
        raise _NotForLevel(str(error)) from None
    if run.scenario is not None:
        workload = workload.in_scenario(run.scenario)
    options = {name: value for name, value in run.settings().items() if name != "seed"}
    return llm_overrides(workload, options).batch_sizes


def _checks(folder: Path) -> dict[str, fields.Check]:
    """Each field's check; paths are read relative to `folder`, the sweep file's."""
    return {
        "level": fields.choice(Level),
        "targets": _each(_target_spec),
        "models": _each(functools.partial(_model, folder)),
        "suites": _each(functools.partial(_suite, folder)),
        "pipelines": _each(fields.pipeline),
        "batch": fields.positive_ints,
        "scenario": fields.choice(Scenario),
        "hardware": _hardware,
        "seed": fields.int_at_least(0, "LoadGen's seeds are unsigned"),
        "min_duration": fields.non_negative,
        "min_queries": fields.positive_int,
        "server_qps": fields.positive,
        "latency_bound": fields.positive,
        "prompt_len": fields.positive_ints,
        "gen_len": fields.positive_int,
        "rate": fields.positive,
        "ttft_bound": fields.positive,
        "tpot_bound": fields.positive,
        "min_time": fields.positive,
        "max_time": fields.positive,
    }


def _each(check: fields.Check) -> fields.Check:
    """A non-empty list, each item checked."""

    def checked(raw: object) -> tuple[Any, ...]:
        if not isinstance(raw, list) or not raw:
            raise fields.FieldError(f"must be a non-empty list, got {raw!r}")
        return tuple(check(item) for item in raw)

    return checked


def _target_spec(raw: object) -> str:
    """A target with its options, in the canonical spelling (options sorted) that job ids
    hash, so one target written two ways is one job."""
    spec = fields.name(raw)
    try:
        name, options = split_options(spec, spec)
    except PipelineError as error:
        raise fields.FieldError(f"{spec!r}: {error}") from None
    return fields.target_spec(name, options)


def _model(folder: Path, raw: object) -> str:
    """A zoo name as it is; an .onnx file as its absolute path."""
    model = fields.name(raw)
    if model in ZOO:
        return model
    path = folder / model
    if path.suffix == ".onnx" and path.is_file():
        return str(path.resolve())
    raise fields.FieldError(
        f"names no zoo model and no .onnx file: {model!r} (`runner zoo list` shows the zoo)"
    )


def _suite(folder: Path, raw: object) -> str:
    """A shipped suite's name as it is; a suite file as its absolute path; read either way."""
    suite = fields.name(raw)
    if suite not in shipped_suites():
        path = folder / suite
        if path.suffix != ".toml" or not path.is_file():
            known = ", ".join(shipped_suites())
            raise fields.FieldError(
                f"names no shipped suite ({known}) and no .toml file: {suite!r}"
            )
        suite = str(path.resolve())
    try:
        load_suite(suite)
    except AsicperfError as error:
        raise fields.FieldError(str(error)) from None
    return suite


def _hardware(raw: object) -> str:
    """ "host", or a hardware-database product, as its slug."""
    name = fields.name(raw)
    if name == HOST:
        return name
    try:
        return hardware_spec(name).slug
    except UnknownHardwareError as error:
        raise fields.FieldError(f"{error}; or {HOST!r} for a node's own CPU") from None


fields.require_every_field_checked(Run, _checks(Path()))
