"""mlperf_log_detail.txt: one `:::MLLOG {json}` line per entry LoadGen logged.

Each entry has a "key", a "value" and "metadata" whose "is_error" / "is_warning" flags mark
LoadGen's own errors (invalid settings, "Ending early: Ran out of generated queries", ...) and
warnings. Keys this reader does not know are kept, not refused: LoadGen adds keys between
versions. The typed accessors are strict instead: a key a caller needs that is missing or of
the wrong type is a one-line error naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ir.errors import AsicperfError

PREFIX = ":::MLLOG "


@dataclass(frozen=True)
class DetailLog:
    path: Path
    values: Mapping[str, object]  # the last value logged under each key
    errors: tuple[str, ...]  # "key: value" of each entry flagged is_error, in log order
    warnings: tuple[str, ...]  # the same for is_warning

    def has(self, key: str) -> bool:
        return key in self.values

    @property
    def token_latencies(self) -> bool:
        """Whether the run timed tokens (LoadGen logs the request only when it is on), which
        changes what its verdict judges and which figures it logs (token_latencies.py)."""
        return self.has("requested_use_token_latencies") and self.flag(
            "requested_use_token_latencies"
        )

    def number(self, key: str) -> float:
        value = self._required(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, value, "a number")
        return float(value)

    def integer(self, key: str) -> int:
        value = self._required(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, value, "an integer")
        return value

    def flag(self, key: str) -> bool:
        value = self._required(key)
        if not isinstance(value, bool):
            raise self._wrong(key, value, "true or false")
        return value

    def text(self, key: str) -> str:
        value = self._required(key)
        if not isinstance(value, str):
            raise self._wrong(key, value, "a string")
        return value

    def _required(self, key: str) -> object:
        if key not in self.values:
            raise AsicperfError(f"{self.path}: LoadGen's detail log has no '{key}' entry")
        return self.values[key]

    def _wrong(self, key: str, value: object, expected: str) -> AsicperfError:
        return AsicperfError(f"{self.path}: '{key}' is {value!r}, expected {expected}")


def read_detail_log(path: Path) -> DetailLog:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise AsicperfError(f"{path}: cannot read LoadGen's detail log: {error}") from error
    values: dict[str, object] = {}
    errors: list[str] = []
    warnings: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(PREFIX):
            continue
        key, value, metadata = _entry(line[len(PREFIX) :], f"{path}:{number}")
        values[key] = value
        if metadata.get("is_error") is True:
            errors.append(f"{key}: {value}")
        if metadata.get("is_warning") is True:
            warnings.append(f"{key}: {value}")
    return DetailLog(path, values, tuple(errors), tuple(warnings))


def _entry(text: str, where: str) -> tuple[str, object, Mapping[str, object]]:
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as error:
        raise AsicperfError(f"{where}: a LoadGen log entry that is not JSON: {error}") from error
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise AsicperfError(f"{where}: a LoadGen log entry without a 'key'")
    metadata = entry.get("metadata")
    return entry["key"], entry.get("value"), metadata if isinstance(metadata, dict) else {}
