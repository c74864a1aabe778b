"""The result document: one versioned schema for op-level and model-level results, checked on
every read so a report never draws from a file it misunderstands.

A document says what ran (model and IR fingerprint, pipeline and audit fingerprint, target,
version and options; or the op suite and timing policy), where (`environment`: host, OS,
package versions, git revision, command line, seed, thread settings) and what came out (raw
samples with their statistics, accuracy and drift). docs/results.md describes every field.

Version history: 1 had no `schema` key for model results and `asicperf.op-bench/1` for op
results, and kept no environment or raw model latencies; it is read by upgrading it in memory
(`migrated_from` says so, and what it never recorded is null).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ir.errors import AsicperfError
from ir.files import write_text_atomically

SCHEMA_NAME = "asicperf.result"
SCHEMA_VERSION = 2
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"
KINDS = ("model", "op")
RESULT_FILE = "result.json"  # a result folder's document; batch files sit beside it
_OP_BENCH_V1 = "asicperf.op-bench/1"


class ResultError(AsicperfError):
    """A result file that cannot be read: missing, not JSON, a newer schema, or a field that
    is absent or of the wrong type."""


@dataclass(frozen=True)
class Nullable:
    """A field that may be null (not measured, or not recorded by an older version)."""

    spec: Any


_NUMBER = (int, float)
_STR_OR_NULL = Nullable(str)
_LATENCY_MS = {"mean": _NUMBER, "p50": _NUMBER, "p90": _NUMBER, "p99": _NUMBER}
_LATENCY_US = {"median": _NUMBER, "mean": _NUMBER, "p10": _NUMBER, "p90": _NUMBER, "iqr": _NUMBER}
_DRIFT = {"outputs": [dict]}
_AUDITED_PASS = {"pass": str, "modified": bool, "numeric": Nullable(dict)}
_ENVIRONMENT = {
    "host": {"cpu": str, "cores": Nullable(int), "threads": Nullable(int), "flags": [str]},
    "gpus": [str],
    "os": _STR_OR_NULL,
    "python": _STR_OR_NULL,
    "packages": dict,
    "git": Nullable({"revision": str, "dirty": bool}),
    "command": Nullable([str]),
    "seed": Nullable(int),
    "threads": Nullable({"cpu_count": Nullable(int), "env": dict}),
}
_COMMON = {"schema": str, "kind": str, "created": _STR_OR_NULL, "environment": _ENVIRONMENT}
_KIND_FIELDS: dict[str, dict[str, Any]] = {
    "model": {
        "model": str,
        "ir_fingerprint": str,
        "target": str,
        "target_info": {
            "name": str,
            "version": _STR_OR_NULL,
            "device": _STR_OR_NULL,
            "hardware": _STR_OR_NULL,
        },
        "pipeline": _STR_OR_NULL,
        "audit": Nullable({"fingerprint": str, "passes": [_AUDITED_PASS]}),
        "scenario": str,
        "compile_s": _NUMBER,
        "batches": [
            {
                "batch_size": int,
                "qps": _NUMBER,
                "latency_ms": _LATENCY_MS,
                "latencies_ms": Nullable([_NUMBER]),
                "valid": bool,
                "why": str,
                "queries": int,
                "drift": _DRIFT,
            }
        ],
        "best_batch": Nullable(int),
        "accuracy": Nullable(dict),
        "drift": _DRIFT,
    },
    "op": {
        "suite": str,
        "policy": dict,
        "rooflines": dict,
        "cases": [
            {
                "op": str,
                "provider": str,
                "dtype": str,
                "shape": str,
                "latency_us": _LATENCY_US,
                "samples_us": [_NUMBER],
                "gflops": _NUMBER,
                "gbps": _NUMBER,
                "intensity": _NUMBER,
                "bound": _STR_OR_NULL,
                "peak_fraction": Nullable(_NUMBER),
                "noisy": bool,
            }
        ],
        "unsupported": [{"op": str, "provider": str, "reason": str}],
        "failed": [{"op": str, "provider": str, "reason": str}],
    },
}


def stamp(
    kind: str, created: str, environment: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """A complete document of the current version, checked before anything is written."""
    document = {**_header(kind, created, environment), **body}
    validate(document, "result")
    return document


def write_result(path: str | Path, document: Mapping[str, Any]) -> Path:
    """Atomically: a crash leaves the previous file (or none), never half a document."""
    validate(document, str(path))
    return write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def read_result(path: str | Path) -> dict[str, Any]:
    """The document at `path` in the current version (upgraded from an older one); a one-line
    ResultError naming the file and the field otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultError(f"{path}: no such result file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultError(f"{path}: not a JSON result ({error})") from None
    if not isinstance(document, dict):
        raise ResultError(f"{path}: not a result document (a JSON object)")
    document = upgrade(document, str(path))
    validate(document, str(path))
    return document


def upgrade(document: dict[str, Any], where: str) -> dict[str, Any]:
    """The document in the current version; refused when it is from a newer asicperf."""
    schema = document.get("schema")
    if schema == SCHEMA:
        return document
    if schema is None and "batches" in document:
        return _model_v1(document)
    if schema == _OP_BENCH_V1:
        return _op_v1(document)
    name, _, number = str(schema).partition("/")
    if name == SCHEMA_NAME and number.isdigit() and int(number) > SCHEMA_VERSION:
        raise ResultError(
            f"{where}: schema {schema} is newer than this asicperf reads ({SCHEMA}); "
            "upgrade asicperf to read it"
        )
    raise ResultError(f"{where}: unknown result schema {schema!r} (this asicperf reads {SCHEMA})")


def validate(document: Mapping[str, Any], where: str) -> None:
    """Every field a report reads is present with its type; extra fields are allowed."""
    _check(document, _COMMON, where, "")
    kind = document["kind"]
    if kind not in KINDS:
        raise ResultError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    _check(document, _KIND_FIELDS[kind], where, "")


def _check(value: Any, spec: Any, where: str, path: str) -> None:
    if isinstance(spec, Nullable):
        if value is None:
            return
        spec = spec.spec
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ResultError(f"{where}: {path or 'the document'} must be an object")
        for key, field_spec in spec.items():
            field_path = f"{path}.{key}" if path else key
            if key not in value:
                raise ResultError(f"{where}: field {field_path} is missing")
            _check(value[key], field_spec, where, field_path)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise ResultError(f"{where}: {path} must be a list")
        for index, item in enumerate(value):
            _check(item, spec[0], where, f"{path}[{index}]")
    elif (isinstance(value, bool) and spec is not bool) or not isinstance(value, spec):
        expected = " or ".join(t.__name__ for t in (spec if isinstance(spec, tuple) else (spec,)))
        raise ResultError(f"{where}: {path} must be {expected}, not {type(value).__name__}")


def _legacy_environment(
    cpu: str, packages: Mapping[str, Any], command: Any, seed: Any
) -> dict[str, Any]:
    """What a version 1 document knew about where it ran; the rest it never recorded."""
    return {
        "host": {"cpu": cpu, "cores": None, "threads": None, "flags": []},
        "gpus": [],
        "os": None,
        "python": packages.get("python"),
        "packages": {name: v for name, v in packages.items() if name not in ("python", "target")},
        "git": None,
        "command": command,
        "seed": seed,
        "threads": None,
    }


def _model_v1(old: dict[str, Any]) -> dict[str, Any]:
    versions = old.get("versions") or {}
    body = {k: v for k, v in old.items() if k not in ("host", "versions")}
    body["target_info"] = {
        "name": str(old.get("target", "?")).split("{")[0],
        "version": versions.get("target"),
        "device": old.get("host"),
        "hardware": None,
    }
    body["audit"] = None
    body["batches"] = [{**batch, "latencies_ms": None} for batch in old.get("batches", [])]
    seed = (old.get("settings") or {}).get("seed")
    environment = _legacy_environment(str(old.get("host", "?")), versions, None, seed)
    return {**_header("model", None, environment), **body, "migrated_from": "1"}


def _op_v1(old: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in old.items() if k not in ("schema", "command", "created", "seed")}
    device = (old.get("rooflines", {}).get("host") or {}).get("device", "?")
    environment = _legacy_environment(str(device), {}, old.get("command"), old.get("seed"))
    created = old.get("created")
    return {**_header("op", created, environment), **body, "migrated_from": _OP_BENCH_V1}


def _header(kind: str, created: str | None, environment: Mapping[str, Any]) -> dict[str, Any]:
    return {"schema": SCHEMA, "kind": kind, "created": created, "environment": dict(environment)}
