"""Workloads: what to measure on a model (batches, pipeline, target, scenario, run length) and
how to judge its accuracy, kept as one TOML file each so a result can name exactly what it ran.
Every field is checked on load, so a typo is a one-line error naming the file and field, never
a silently ignored setting."""

from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ir.bindings import MAX_DIM
from ir.errors import AsicperfError
from passes.pipeline import parse_pipeline
from zoo.catalog import ZOO
from zoo.model import TEXT_GENERATION

Scenario = Literal["single-stream", "multi-stream", "server", "offline"]  # LoadGen's four
AccuracyMetric = Literal["top-1", "embedding-cosine", "output-drift"]

WORKLOAD_DIR = Path(__file__).with_name("workloads")


class WorkloadError(AsicperfError):
    """A workload file that cannot be read, or a field with a bad value."""


@dataclass(frozen=True)
class Workload:
    """One measurement plan. Fields without a default must be in every workload file."""

    name: str
    model: str  # a zoo name; a user's ONNX path only in `default_workload`
    batch_sizes: tuple[int, ...]
    scenario: Scenario
    accuracy_metric: AccuracyMetric
    accuracy_threshold: float  # top-1 ≥, embedding cosine ≥, or output cosine ≥
    pipeline: str = ""  # pass pipeline spec; "" runs the model as written
    target: str = "onnxruntime"
    target_options: Mapping[str, str] = field(default_factory=dict)
    min_duration_s: float = 1.0
    min_queries: int = 64  # LoadGen's min query count (offline: batches)
    latency_bound_ms: float | None = None  # the server scenario's and best-batch's bound
    server_qps: float | None = None  # the server scenario's offered load, items/s
    latency_percentile: float | None = None  # LoadGen's target percentile; None: its default
    samples_per_query: int | None = None  # multi-stream: batches per query; None: LoadGen's 8
    dataset: str = ""
    dataset_fraction: float = 1.0

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        data["target_options"] = dict(self.target_options)
        return data

    @property
    def target_spec(self) -> str:
        """The target with its options, as `--target` takes it: "onnxruntime{threads=2}"."""
        options = " ".join(f"{k}={v}" for k, v in sorted(self.target_options.items()))
        return f"{self.target}{{{options}}}" if options else self.target

    def in_scenario(self, scenario: str) -> Workload:
        """This workload run in `scenario` instead: the settings that only its own scenario
        reads (`SCENARIO_ONLY`) are dropped rather than carried into one LoadGen would
        ignore them in (a server rate in an offline run)."""
        dropped = {
            key: None
            for key, scenarios in SCENARIO_ONLY.items()
            if scenario not in scenarios and getattr(self, key) is not None
        }
        return dataclasses.replace(self, scenario=scenario, **dropped)


# Fields that LoadGen reads in some scenarios only, and those scenarios.
SCENARIO_ONLY: dict[str, tuple[str, ...]] = {
    "server_qps": ("server",),
    "samples_per_query": ("multi-stream",),
    "latency_percentile": ("single-stream", "multi-stream", "server"),
}


class _Bad(ValueError):
    """What is wrong with one field's value; `_parse` adds the file and field."""


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise _Bad(f"must be a string, got {raw!r}")
    return raw


def _name(raw: object) -> str:
    if not _text(raw).strip():
        raise _Bad("must not be empty")
    return str(raw)


def _zoo_model(raw: object) -> str:
    if _text(raw) not in ZOO:
        raise _Bad(f"names no zoo model: {raw!r} (known: {', '.join(ZOO)})")
    return str(raw)


def _pipeline(raw: object) -> str:
    if _text(raw):
        try:
            parse_pipeline(str(raw))
        except AsicperfError as error:
            raise _Bad(f"is not a valid pipeline: {error}") from error
    return str(raw)


def _number(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Bad(f"must be a number, got {raw!r}")
    if not math.isfinite(raw):
        raise _Bad(f"must be finite, got {raw!r}")
    return float(raw)


def _positive(raw: object) -> float:
    if _number(raw) <= 0:
        raise _Bad(f"must be positive, got {raw!r}")
    return float(raw)  # type: ignore[arg-type]


def _positive_int(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise _Bad(f"must be a positive integer, got {raw!r}")
    return raw


def _batch_sizes(raw: object) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise _Bad(f"must be a non-empty list of positive integers, got {raw!r}")
    try:
        sizes = tuple(_positive_int(size) for size in raw)
    except _Bad:
        raise _Bad(f"must be a non-empty list of positive integers, got {raw!r}") from None
    if max(sizes) > MAX_DIM:
        raise _Bad(f"must be at most {MAX_DIM} (the largest dim), got {max(sizes)}")
    return sizes


def _string_table(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise _Bad(f"must be a table of strings, got {raw!r}")
    return dict(raw)


def _choice(kind: object) -> Callable[[object], str]:
    choices = get_args(kind)

    def check(raw: object) -> str:
        if raw not in choices:
            raise _Bad(f"must be one of {', '.join(choices)}, got {raw!r}")
        return str(raw)

    return check


def _percentile(raw: object) -> float:
    if not 0 < _number(raw) < 1:
        raise _Bad(f"must be in (0, 1) (0.9 is p90), got {raw!r}")
    return float(raw)  # type: ignore[arg-type]


def _fraction(raw: object) -> float:
    if not 0 < _number(raw) <= 1:
        raise _Bad(f"must be in (0, 1], got {raw!r}")
    return float(raw)  # type: ignore[arg-type]


def _unit(raw: object) -> float:
    if not 0 <= _number(raw) <= 1:
        raise _Bad(f"must be in [0, 1], got {raw!r}")
    return float(raw)  # type: ignore[arg-type]


_CHECKS: dict[str, Callable[[object], Any]] = {
    "name": _name,
    "model": _zoo_model,
    "batch_sizes": _batch_sizes,
    "scenario": _choice(Scenario),
    "accuracy_metric": _choice(AccuracyMetric),
    "accuracy_threshold": _unit,
    "pipeline": _pipeline,
    "target": _name,
    "target_options": _string_table,
    "min_duration_s": _positive,
    "min_queries": _positive_int,
    "latency_bound_ms": _positive,
    "server_qps": _positive,
    "latency_percentile": _percentile,
    "samples_per_query": _positive_int,
    "dataset": _text,
    "dataset_fraction": _fraction,
}
assert set(_CHECKS) == {f.name for f in dataclasses.fields(Workload)}, "a field has no check"


def check_field(key: str, raw: object, where: str) -> Any:
    """`raw` checked as workload field `key`, for values from elsewhere than a workload file
    (command-line overrides): a bad one is a WorkloadError naming `where` (the option)."""
    try:
        return _CHECKS[key](raw)
    except _Bad as error:
        raise WorkloadError(f"{where}: {error}") from None


def _parse(path: Path, data: Mapping[str, object]) -> Workload:
    def fail(key: str, problem: str) -> WorkloadError:
        return WorkloadError(f"{path}: '{key}' {problem}")

    for key in data:
        if key not in _CHECKS:
            raise fail(key, f"is not a workload field (known: {', '.join(_CHECKS)})")
    for spec in dataclasses.fields(Workload):
        required = spec.default is spec.default_factory is dataclasses.MISSING
        if required and spec.name not in data:
            raise fail(spec.name, "is missing")
    values = {}
    for key, raw in data.items():
        try:
            values[key] = _CHECKS[key](raw)
        except _Bad as error:
            raise fail(key, str(error)) from None
    workload = Workload(**values)
    if workload.scenario == "server":
        for key in ("latency_bound_ms", "server_qps"):
            if getattr(workload, key) is None:
                raise fail(key, "is needed by the server scenario")
    for key, scenarios in SCENARIO_ONLY.items():
        if key in data and workload.scenario not in scenarios:
            raise fail(key, f"does not apply to the {workload.scenario} scenario")
    return workload


def load_workload(path: Path) -> Workload:
    """The workload in a TOML file, every field checked."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise WorkloadError(f"{path}: cannot read the workload: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise WorkloadError(f"{path}: not valid TOML: {error}") from error
    return _parse(path, data)


@functools.cache
def shipped_workloads() -> dict[str, Workload]:
    """The workloads in `WORKLOAD_DIR`, by name."""
    workloads = [load_workload(path) for path in sorted(WORKLOAD_DIR.glob("*.toml"))]
    return {workload.name: workload for workload in workloads}


def workload_for(name_or_path: str) -> Workload:
    """A shipped workload by name, else the workload file at that path."""
    shipped = shipped_workloads().get(name_or_path)
    if shipped is not None:
        return shipped
    path = Path(name_or_path)
    if not path.is_file():
        raise WorkloadError(
            f"'{name_or_path}': no such file and no shipped workload of that name "
            f"(known: {', '.join(shipped_workloads())})"
        )
    return load_workload(path)


def default_workload(model: str) -> Workload:
    """The shipped workload of zoo model `model`; for any other model (a user's ONNX file),
    batch 1, single-stream, judged by output drift against the unoptimized reference. A zoo
    text-generation model has none: its figures are per prompt and generation length, which a
    model-level workload does not describe, and a fixed-shape default would time one token."""
    for workload in shipped_workloads().values():
        if workload.model == model:
            return workload
    if model in ZOO and ZOO[model].task == TEXT_GENERATION:
        raise AsicperfError(
            f"'{model}' generates text: it is measured per prompt and generation length "
            "(time to first token, time per output token), which model-level workloads do not "
            "describe; no model-level benchmark runs it"
        )
    return Workload(
        name=Path(model).stem,
        model=model,
        batch_sizes=(1,),
        scenario="single-stream",
        accuracy_metric="output-drift",
        accuracy_threshold=0.999,
        dataset="seeded synthetic inputs",
    )
