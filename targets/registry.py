"""Finding targets: every target, built-in or a vendor's, registers under the entry-point group
`asicperf.targets` (name = target name, value = `module:Class`). Nothing in the core names a
target, so a vendor's package adds one by being installed."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

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


def discover() -> dict[str, TargetEntry]:
    """All registered targets by name, each imported (or with the reason it failed)."""
    found: dict[str, TargetEntry] = {}
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            loaded = point.load()
        except Exception as error:  # a broken plugin must not take the toolkit down
            found[point.name] = TargetEntry(point.name, point.value, None, first_line(error))
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, Target)):
            problem = f"{point.value} is not a Target subclass"
            found[point.name] = TargetEntry(point.name, point.value, None, problem)
            continue
        found[point.name] = TargetEntry(point.name, point.value, loaded, None)
    return found


def get_target(name: str) -> Target:
    """An instance of the target called `name`, ready to compile; a one-line error otherwise."""
    entries = discover()
    entry = entries.get(name)
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
