"""Allowed ranges of numeric options, declared on the config field they bound.

A pass or target config states each numeric field's range where it declares the field:

    threads: int = bounded(0, low=0, note="0: the runtime's default")
    ratio: float | None = bounded(None, low=0, high=1, high_open=True)

`PassConfig` checks every config against its declared ranges when it is built, so a value out
of range (`threads=-1`) is one line naming the option and its range, whether it came from the
command line or from code, rather than an odd failure (or a silent default) later on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_KEY = "asicperf.range"


@dataclass(frozen=True)
class Range:
    """low (<= or <) value (<= or <) high; a missing bound is no bound."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False  # high itself is not allowed
    note: str = ""  # what a boundary value means, e.g. "0: the runtime's default"

    def contains(self, value: float) -> bool:
        """Whether `value` is in range; NaN never is."""
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self, name: str) -> str:
        """The range as an inequality on `name`: `0 <= ratio < 1`, `threads >= 0`."""
        if self.low is not None and self.high is not None:
            return (
                f"{_number(self.low)} {'<' if self.low_open else '<='} {name} "
                f"{'<' if self.high_open else '<='} {_number(self.high)}"
            )
        if self.low is not None:
            return f"{name} {'>' if self.low_open else '>='} {_number(self.low)}"
        if self.high is not None:
            return f"{name} {'<' if self.high_open else '<='} {_number(self.high)}"
        return f"any {name}"


def bounded(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    note: str = "",
) -> Any:
    """A dataclass field with `default` whose value must lie in the range given."""
    bounds = Range(low, high, low_open, high_open, note)
    return dataclasses.field(default=default, metadata={_KEY: bounds})


def field_range(field: dataclasses.Field) -> Range | None:
    """The range a config field declares, or None."""
    return field.metadata.get(_KEY)


def check_ranges(config: Any) -> None:
    """Raise ValueError naming the first field of the dataclass `config` whose value is out of
    its declared range: `threads=-1 is outside threads >= 0`. None, "not set", is not
    checked."""
    for field in dataclasses.fields(config):
        bounds = field_range(field)
        value = getattr(config, field.name)
        if bounds is None or value is None or isinstance(value, bool):
            continue
        if not bounds.contains(value):
            note = f" ({bounds.note})" if bounds.note else ""
            raise ValueError(f"{field.name}={value} is outside {bounds.describe(field.name)}{note}")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"
