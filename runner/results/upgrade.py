"""Reading documents written by older versions: version 1 had no `schema` key for model results
and `asicperf.op-bench/1` for op results, and kept no environment or raw model latencies;
version 2 is version 3 without the `llm` kind, and version 3 is version 4 without the `profile`
kind. An older document is upgraded in memory
(`migrated_from` says so, and what it never recorded is null); a document of a newer version
is refused rather than misread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.results.document import SCHEMA, SCHEMA_NAME, SCHEMA_VERSION
from runner.results.record import ResultError

_OP_BENCH_V1 = "asicperf.op-bench/1"
_V2 = f"{SCHEMA_NAME}/2"
_V3 = f"{SCHEMA_NAME}/3"
# Versions that record what the current one does for the kinds they knew; only the schema differs.
_KINDS_OF = {_V2: ("model", "op"), _V3: ("model", "op", "llm")}
VERSIONS_WITHOUT_ENVIRONMENT = ("1", _OP_BENCH_V1)  # `migrated_from` of documents that kept none


def upgrade(document: dict[str, Any], where: str) -> dict[str, Any]:
    """The document in the current version; refused when it is from a newer asicperf."""
    schema = document.get("schema")
    if schema == SCHEMA:
        return document
    if schema is None and "batches" in document:
        return _model_v1(document)
    if schema == _OP_BENCH_V1:
        return _op_v1(document)
    if schema in _KINDS_OF:
        return _same_fields(document, str(schema), where)
    name, _, number = str(schema).partition("/")
    if name == SCHEMA_NAME and number.isdigit() and int(number) > SCHEMA_VERSION:
        raise ResultError(
            f"{where}: schema {schema} is newer than this asicperf reads ({SCHEMA}); "
            "upgrade asicperf to read it"
        )
    raise ResultError(f"{where}: unknown result schema {schema!r} (this asicperf reads {SCHEMA})")


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


def _same_fields(old: dict[str, Any], schema: str, where: str) -> dict[str, Any]:
    """A version that records what the current one does for its kinds; a kind it did not
    know is refused."""
    kind, kinds = old.get("kind"), _KINDS_OF[schema]
    if kind not in kinds:
        raise ResultError(
            f"{where}: kind {kind!r} did not exist in schema {schema} ({', '.join(kinds)})"
        )
    return {**old, "schema": SCHEMA, "migrated_from": schema.rpartition("/")[2]}


def _header(kind: str, created: str | None, environment: Mapping[str, Any]) -> dict[str, Any]:
    return {"schema": SCHEMA, "kind": kind, "created": created, "environment": dict(environment)}
