"""Suites: which op cases to run, as data files (TOML) rather than code, so a buyer can keep a
suite of the shapes their models use next to their results.

    [[cases]]
    op = "gemm"                          # or a list of ops sharing the shapes
    dtypes = ["fp32", "int8"]            # default: every dtype the op supports
    shapes = ["2048x2048x2048"]
    providers = ["numpy", "numba"]       # optional; default: every provider asked for

A suite is named by a path, or by the name of one shipped in microbench/suites/.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ir.errors import AsicperfError
from microbench.ops import OPS, BenchCase, parse_case

SUITES_DIR = Path(__file__).with_name("suites")
_CASE_KEYS = {"op", "dtypes", "shapes", "providers"}


class SuiteError(AsicperfError):
    """A suite file is missing, unreadable, or names an op, dtype or shape that does not exist."""


@dataclass(frozen=True)
class SuiteCase:
    """One case, and the providers the suite restricts it to (None: all that were asked for)."""

    case: BenchCase
    providers: tuple[str, ...] | None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cases: tuple[SuiteCase, ...]


def shipped_suites() -> list[str]:
    return sorted(path.stem for path in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """The suite at a path, or the shipped one of that name; every mistake is one line naming
    the file and the entry."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = SUITES_DIR / f"{name_or_path}.toml"
        if not path.exists():
            known = ", ".join(shipped_suites())
            raise SuiteError(f"unknown suite '{name_or_path}' (shipped: {known}; or a .toml path)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SuiteError(f"{path}: not a readable TOML suite ({error})") from None
    entries = data.get("cases")
    if not isinstance(entries, list) or not entries:
        raise SuiteError(f"{path}: needs at least one [[cases]] table")
    cases = [
        case for number, entry in enumerate(entries, 1) for case in _cases(path, number, entry)
    ]
    return Suite(path.stem, str(data.get("description", "")), tuple(cases))


def _cases(path: Path, number: int, entry: object) -> list[SuiteCase]:
    where = f"{path}: case {number}"
    if not isinstance(entry, dict):
        raise SuiteError(f"{where}: must be a table")
    unknown = set(entry) - _CASE_KEYS
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if isinstance(entry.get("op"), str):
        entry = {**entry, "op": [entry["op"]]}
    ops = _strings(where, entry, "op", None)
    unknown_ops = [op for op in ops if op not in OPS]
    if unknown_ops:
        raise SuiteError(f"{where}: unknown op {unknown_ops[0]!r} (known: {', '.join(OPS)})")
    shapes = _strings(where, entry, "shapes", None)
    providers = _strings(where, entry, "providers", None) if "providers" in entry else None
    try:
        return [
            SuiteCase(parse_case(op, dtype, shape), providers)
            for op in ops
            for dtype in _strings(where, entry, "dtypes", OPS[op].dtypes)
            for shape in shapes
        ]
    except ValueError as error:
        raise SuiteError(f"{where}: {error}") from None


def _strings(where: str, entry: dict, key: str, default: tuple[str, ...] | None) -> tuple[str, ...]:
    value = entry.get(key, default)
    if value is None:
        raise SuiteError(f"{where}: needs '{key}'")
    if not (isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value)):
        raise SuiteError(f"{where}: '{key}' must be a non-empty list of strings")
    return tuple(value)
