"""The base of every result record: a frozen dataclass that reads itself from JSON, checking
each field's type on the way, and writes itself back in the same shape.

One generic reader rather than a `from_json` per record: the dataclass's fields are the
schema, so the checks and their one-line errors ("result.json: field batches[0].qps is
missing") cannot drift from the fields the report reads.

A field without a default must be present (null only where its type allows None); a field
with a default is one that documents written by older versions may lack. Keys a record does
not know are kept in `extra` and written back, so rewriting a document that a newer asicperf
extended loses nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Self

from ir.errors import AsicperfError

_KEY = "json_key"
_OMIT_NONE = "omit_none"


class ResultError(AsicperfError):
    """A result that cannot be read: missing, not JSON, a newer schema, or a field that is
    absent or of the wrong type."""


def json_key(key: str, default: Any = dataclasses.MISSING) -> Any:
    """A field stored under another name than its attribute (`pass` is a keyword, `bytes` a
    type); required unless given a default."""
    return dataclasses.field(default=default, metadata={_KEY: key})


def omitted_when_none() -> Any:
    """An optional field that the writer leaves out rather than writing null."""
    return dataclasses.field(default=None, metadata={_OMIT_NONE: True})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """A part of a result document."""

    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def fixed_keys(cls) -> dict[str, str]:
        """Keys whose value the record's type decides (a document's schema and kind)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = self.fixed_keys()
        for field in _fields(type(self)):
            value = getattr(self, field.name)
            if value is None and field.metadata.get(_OMIT_NONE):
                continue
            data[field.metadata.get(_KEY, field.name)] = _encode(value)
        data.update(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "result", path: str = "") -> Self:
        """The record in `data`; a ResultError naming `where` (the file) and the field's
        `path` in the document when a field is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise ResultError(f"{where}: {path or 'the document'} must be an object")
        for key, value in cls.fixed_keys().items():
            if data.get(key) != value:
                found = data.get(key)
                raise ResultError(f"{where}: {_join(path, key)} must be {value!r}, not {found!r}")
        hints = _hints(cls)
        known = set(cls.fixed_keys())
        values: dict[str, Any] = {}
        for field in _fields(cls):
            key = field.metadata.get(_KEY, field.name)
            known.add(key)
            if key in data:
                values[field.name] = _decode(hints[field.name], data[key], where, _join(path, key))
            elif _required(field):
                raise ResultError(f"{where}: field {_join(path, key)} is missing")
        extra = {key: value for key, value in data.items() if key not in known}
        return cls(**values, extra=extra)


@functools.cache
def _fields(cls: type[Record]) -> tuple[dataclasses.Field, ...]:
    return tuple(field for field in dataclasses.fields(cls) if field.name != "extra")


@functools.cache
def _hints(cls: type[Record]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _decode(hint: Any, value: Any, where: str, path: str) -> Any:
    """`value` as the annotation `hint` says: a record, a tuple of items, a str-keyed mapping,
    a scalar (an int is a float; a bool is neither), None where the hint allows it."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
        if value is None and len(arms) < len(typing.get_args(hint)):
            return None
        (arm,) = arms
        return _decode(arm, value, where, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise ResultError(f"{where}: {path} must be a list")
        item = typing.get_args(hint)[0]
        return tuple(_decode(item, v, where, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, dict):
            raise ResultError(f"{where}: {path} must be an object")
        item = typing.get_args(hint)[1]
        return {key: _decode(item, v, where, f"{path}.{key}") for key, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, where, path)
    expected = (int, float) if hint is float else (hint,)
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in expected)
        raise ResultError(f"{where}: {path} must be {names}, not {type(value).__name__}")
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _encode(item) for key, item in value.items()}
    return value
