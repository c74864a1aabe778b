"""Workloads: what to measure on a model (batches, pipeline, target, scenario, run length) and
how to judge its accuracy, kept as one TOML file each so a result can name exactly what it ran.
Every field is checked on load, so a typo is a one-line error naming the file and field, never
a silently ignored setting."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ir.errors import AsicperfError
from zoo import workload_fields as fields
from zoo.catalog import ZOO
from zoo.model import TEXT_GENERATION
from zoo.workload_fields import WorkloadError

Scenario = Literal["single-stream", "multi-stream", "server", "offline"]  # LoadGen's four
AccuracyMetric = Literal["top-1", "embedding-cosine", "output-drift"]

WORKLOAD_DIR = Path(__file__).with_name("workloads")


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
        return fields.fields_json(self)

    @property
    def target_spec(self) -> str:
        """The target with its options, as `--target` takes it: "onnxruntime{threads=2}"."""
        return fields.target_spec(self.target, self.target_options)

    def in_scenario(self, scenario: str) -> Workload:
        """This workload run in `scenario` instead: the settings that only its own scenario
        reads (`SCENARIO_ONLY`) are dropped rather than carried into one LoadGen would
        ignore them in (a server rate in an offline run)."""
        return fields.in_scenario(self, scenario, SCENARIO_ONLY)


# Fields that LoadGen reads in some scenarios only, and those scenarios.
SCENARIO_ONLY: dict[str, tuple[str, ...]] = {
    "server_qps": ("server",),
    "samples_per_query": ("multi-stream",),
    "latency_percentile": ("single-stream", "multi-stream", "server"),
}


def _zoo_model(raw: object) -> str:
    if fields.text(raw) not in ZOO:
        raise fields.FieldError(f"names no zoo model: {raw!r} (known: {', '.join(ZOO)})")
    return str(raw)


_CHECKS: dict[str, fields.Check] = {
    "name": fields.name,
    "model": _zoo_model,
    "batch_sizes": fields.positive_ints,
    "scenario": fields.choice(Scenario),
    "accuracy_metric": fields.choice(AccuracyMetric),
    "accuracy_threshold": fields.unit,
    "pipeline": fields.pipeline,
    "target": fields.name,
    "target_options": fields.string_table,
    "min_duration_s": fields.positive,
    "min_queries": fields.positive_int,
    "latency_bound_ms": fields.positive,
    "server_qps": fields.positive,
    "latency_percentile": fields.percentile,
    "samples_per_query": fields.positive_int,
    "dataset": fields.text,
    "dataset_fraction": fields.fraction,
}
fields.require_every_field_checked(Workload, _CHECKS)


def check_field(key: str, raw: object, where: str) -> Any:
    """`raw` checked as workload field `key`, for values from elsewhere than a workload file
    (command-line overrides): a bad one is a WorkloadError naming `where` (the option)."""
    return fields.check_value(_CHECKS, key, raw, where)


def _parse(path: Path, data: Mapping[str, object]) -> Workload:
    workload = Workload(**fields.parse_fields(path, data, Workload, _CHECKS, "a workload"))
    if workload.scenario == "server":
        for key in ("latency_bound_ms", "server_qps"):
            if getattr(workload, key) is None:
                raise fields.field_error(path, key, "is needed by the server scenario")
    for key, scenarios in SCENARIO_ONLY.items():
        if key in data and workload.scenario not in scenarios:
            raise fields.field_error(
                path, key, f"does not apply to the {workload.scenario} scenario"
            )
    return workload


def load_workload(path: Path) -> Workload:
    """The workload in a TOML file, every field checked."""
    return _parse(path, fields.read_toml(path))


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
    model-level workload does not describe (an LLM workload does: zoo.llm_workload), and a
    fixed-shape default would time one token."""
    for workload in shipped_workloads().values():
        if workload.model == model:
            return workload
    if model in ZOO and ZOO[model].task == TEXT_GENERATION:
        raise AsicperfError(
            f"'{model}' generates text: it is measured per prompt and generation length "
            "(time to first token, time per output token), which model-level workloads do not "
            "describe; measure it with `runner bench --level llm`"
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
