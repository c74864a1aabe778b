"""Reading a workload file and checking its fields, shared by the model-level workloads
(zoo.workload) and the LLM workloads (zoo.llm_workload), so both kinds refuse bad input alike:
every check takes a raw TOML value and returns it typed, or raises `FieldError` saying what is
wrong with it, and `parse_fields` adds the file and the field, so a typo is one line naming
both rather than a silently ignored setting."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args

from ir.bindings import MAX_DIM
from ir.errors import AsicperfError
from passes.pipeline import parse_pipeline

Check = Callable[[object], Any]  # a raw TOML value -> the field's value, or FieldError
Record = TypeVar("Record")


class WorkloadError(AsicperfError):
    """A workload file that cannot be read, or a field with a bad value."""


class FieldError(ValueError):
    """What is wrong with one field's value; `parse_fields` adds the file and field."""


def text(raw: object) -> str:
    if not isinstance(raw, str):
        raise FieldError(f"must be a string, got {raw!r}")
    return raw


def name(raw: object) -> str:
    if not text(raw).strip():
        raise FieldError("must not be empty")
    return str(raw)


def pipeline(raw: object) -> str:
    if text(raw):
        try:
            parse_pipeline(str(raw))
        except AsicperfError as error:
            raise FieldError(f"is not a valid pipeline: {error}") from error
    return str(raw)


def number(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise FieldError(f"must be a number, got {raw!r}")
    if not math.isfinite(raw):
        raise FieldError(f"must be finite, got {raw!r}")
    return float(raw)


def positive(raw: object) -> float:
    if number(raw) <= 0:
        raise FieldError(f"must be positive, got {raw!r}")
    return float(raw)  # type: ignore[arg-type]


def non_negative(raw: object) -> float:
    if number(raw) < 0:
        raise FieldError(f"must be 0 or more, got {raw!r}")
    return float(raw)  # type: ignore[arg-type]


def at_least(minimum: float) -> Check:
    """A number no smaller than `minimum` (a ratio of 1 or more)."""

    def check(raw: object) -> float:
        if number(raw) < minimum:
            raise FieldError(f"must be at least {minimum:g}, got {raw!r}")
        return float(raw)  # type: ignore[arg-type]

    return check


def positive_int(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise FieldError(f"must be a positive integer, got {raw!r}")
    return raw


def int_at_least(minimum: int, why: str) -> Check:
    """An integer no smaller than `minimum`; `why` says who needs that many."""

    def check(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
            raise FieldError(f"must be an integer of at least {minimum} ({why}), got {raw!r}")
        return raw

    return check


def positive_ints(raw: object) -> tuple[int, ...]:
    """A non-empty list of sizes (batch sizes, prompt lengths), each a dim a model can have."""
    if not isinstance(raw, list) or not raw:
        raise FieldError(f"must be a non-empty list of positive integers, got {raw!r}")
    try:
        sizes = tuple(positive_int(size) for size in raw)
    except FieldError:
        raise FieldError(f"must be a non-empty list of positive integers, got {raw!r}") from None
    if max(sizes) > MAX_DIM:
        raise FieldError(f"must be at most {MAX_DIM} (the largest dim), got {max(sizes)}")
    return sizes


def string_table(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise FieldError(f"must be a table of strings, got {raw!r}")
    return dict(raw)


def choice(kind: object) -> Check:
    """One of the values of the Literal type `kind`."""
    choices = get_args(kind)

    def check(raw: object) -> str:
        if raw not in choices:
            raise FieldError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return str(raw)

    return check


def percentile(raw: object) -> float:
    if not 0 < number(raw) < 1:
        raise FieldError(f"must be in (0, 1) (0.9 is p90), got {raw!r}")
    return float(raw)  # type: ignore[arg-type]


def fraction(raw: object) -> float:
    if not 0 < number(raw) <= 1:
        raise FieldError(f"must be in (0, 1], got {raw!r}")
    return float(raw)  # type: ignore[arg-type]


def unit(raw: object) -> float:
    if not 0 <= number(raw) <= 1:
        raise FieldError(f"must be in [0, 1], got {raw!r}")
    return float(raw)  # type: ignore[arg-type]


def require_every_field_checked(record: type, checks: Mapping[str, Check]) -> None:
    """Called where a record's checks are declared, so a field added without a check (which
    every file would then be refused for naming) fails on import instead."""
    fields = {spec.name for spec in dataclasses.fields(record)}  # type: ignore[arg-type]
    if set(checks) != fields:
        raise TypeError(f"{record.__name__}: fields and checks differ: {set(checks) ^ fields}")


def field_error(path: Path, key: str, problem: str) -> WorkloadError:
    return WorkloadError(f"{path}: '{key}' {problem}")


def check_value(checks: Mapping[str, Check], key: str, raw: object, where: str) -> Any:
    """`raw` checked as field `key`, for values from elsewhere than a workload file
    (command-line overrides): a bad one is a WorkloadError naming `where` (the option)."""
    try:
        return checks[key](raw)
    except FieldError as error:
        raise WorkloadError(f"{where}: {error}") from None


def read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML table; an unreadable file or bad TOML is one line naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise WorkloadError(f"{path}: cannot read the workload: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise WorkloadError(f"{path}: not valid TOML: {error}") from error


def parse_fields(
    path: Path, data: Mapping[str, object], record: type, checks: Mapping[str, Check], noun: str
) -> dict[str, Any]:
    """The checked values of `data` (a file of `record`s, a "workload" or "LLM workload"):
    unknown keys, missing fields (those without a default) and bad values refused in that
    order, each naming the file and the field."""
    for key in data:
        if key not in checks:
            raise field_error(path, key, f"is not {noun} field (known: {', '.join(checks)})")
    for spec in dataclasses.fields(record):  # type: ignore[arg-type]
        required = spec.default is spec.default_factory is dataclasses.MISSING
        if required and spec.name not in data:
            raise field_error(path, spec.name, "is missing")
    values = {}
    for key, raw in data.items():
        try:
            values[key] = checks[key](raw)
        except FieldError as error:
            raise field_error(path, key, str(error)) from None
    return values


def fields_json(record: object) -> dict[str, Any]:
    """A record's fields as JSON values: tuples as lists, tables as dicts."""
    specs = dataclasses.fields(record)  # type: ignore[arg-type]
    return {spec.name: _json_value(getattr(record, spec.name)) for spec in specs}


def _json_value(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def target_spec(target: str, options: Mapping[str, str]) -> str:
    """The target with its options, as `--target` takes it: "onnxruntime{threads=2}"."""
    listed = " ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{target}{{{listed}}}" if listed else target


def in_scenario(
    record: Record, scenario: str, scenario_only: Mapping[str, tuple[str, ...]]
) -> Record:
    """`record` run in `scenario` instead: the settings that only some scenarios read
    (`scenario_only`: field -> those scenarios) are dropped where `scenario` is not one of
    them, rather than carried into a run LoadGen would ignore them in."""
    dropped = {
        key: None
        for key, scenarios in scenario_only.items()
        if scenario not in scenarios and getattr(record, key) is not None
    }
    return dataclasses.replace(record, scenario=scenario, **dropped)  # type: ignore[type-var]
