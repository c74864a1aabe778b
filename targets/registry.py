"""Finding targets: every target, built-in or a vendor's, registers under the entry-point group
`asicperf.targets` (name = target name, value = `module:Class`). Nothing in the core names a
target, so a vendor's package adds one by being installed."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from ir.errors import AsicperfError, first_line
from targets.api import Target, TargetInfo

ENTRY_POINT_GROUP = "asicperf.targets"


class UnknownTargetError(AsicperfError):
    """No installed target has that name, or it cannot load."""


@dataclass(frozen=True)
class TargetEntry:
    """One registered target: its class, or why it failed to import."""

    name: str
    source: str  # "module:Class", as registered
    target_type: type[Target] | None
    load_error: str | None

    def info(self) -> TargetInfo:
        if self.target_type is None:
            return TargetInfo(
                self.name, "?", "?", available=False, why_not=f"cannot import: {self.load_error}"
            )
        return self.target_type().info()


def _entry_from_path(path: str) -> TargetEntry:
    return _load_entry(EntryPoint(name=path, value=path, group=ENTRY_POINT_GROUP))


def _load_entry(point: EntryPoint) -> TargetEntry:
    try:
        loaded = point.load()
    except Exception as error:  # a broken plugin must not take the toolkit down
        return TargetEntry(point.name, point.value, None, first_line(error))
    if not (isinstance(loaded, type) and issubclass(loaded, Target)):
        return TargetEntry(point.name, point.value, None, f"{point.value} is not a Target subclass")
    return TargetEntry(point.name, point.value, loaded, None)


def discover() -> dict[str, TargetEntry]:
    """All registered targets by name, each imported (or with the reason it failed)."""
    points = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name)
    return {point.name: _load_entry(point) for point in points}


def get_target(name: str) -> Target:
    """An instance of the target called `name`, ready to compile; a one-line error otherwise.

    `name` may also be `module:Class`, a target not (yet) registered, for its developer.
    """
    entries = discover()
    entry = entries.get(name) if ":" not in name else _entry_from_path(name)
    if entry is None:
        known = ", ".join(entries) or "none installed"
        raise UnknownTargetError(f"unknown target '{name}' (known: {known})")
    if entry.target_type is None:
        raise UnknownTargetError(f"target '{name}' cannot be loaded: {entry.load_error}")
    target = entry.target_type()
    info = target.info()
    if not info.available:
        raise UnknownTargetError(f"target '{name}' is not available here: {info.why_not}")
    return target
