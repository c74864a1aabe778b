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
        """The target's own info; a plugin that fails to import or to describe itself is listed
        as unavailable with the reason instead of taking `runner targets list` down."""
        if self.target_type is None:
            return TargetInfo(self.name, "?", "?", available=False, why_not=self.load_error)
        try:
            return self.target_type().info()
        except Exception as error:  # the vendor's code: a driver probe may fail any way
            return TargetInfo(
                self.name, "?", "?", available=False, why_not=f"info() failed: {first_line(error)}"
            )


def _entry_from_path(path: str) -> TargetEntry:
    return _load_entry(EntryPoint(name=path, value=path, group=ENTRY_POINT_GROUP))


def _load_entry(point: EntryPoint) -> TargetEntry:
    try:
        loaded = point.load()
    except Exception as error:  # a broken plugin must not take the toolkit down
        return TargetEntry(point.name, point.value, None, f"cannot import: {first_line(error)}")
    if not (isinstance(loaded, type) and issubclass(loaded, Target)):
        return TargetEntry(point.name, point.value, None, f"{point.value} is not a Target subclass")
    return TargetEntry(point.name, point.value, loaded, None)


def _points() -> dict[str, list[EntryPoint]]:
    by_name: dict[str, list[EntryPoint]] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.value not in (p.value for p in by_name.get(point.name, [])):
            by_name.setdefault(point.name, []).append(point)
    return dict(sorted(by_name.items()))


def _entry(name: str, points: list[EntryPoint]) -> TargetEntry:
    """A name two packages register is refused rather than one silently shadowing the other."""
    if len(points) > 1:
        sources = " and ".join(point.value for point in points)
        return TargetEntry(name, sources, None, f"registered twice, by {sources}")
    return _load_entry(points[0])


def discover() -> dict[str, TargetEntry]:
    """All registered targets by name, each imported (or with the reason it failed)."""
    return {name: _entry(name, points) for name, points in _points().items()}


def get_target(name: str) -> Target:
    """An instance of the target called `name`, ready to compile; a one-line error otherwise.

    `name` may also be `module:Class`, a target not (yet) registered, for its developer.
    """
    if ":" in name:
        entry = _entry_from_path(name)
    else:
        points = _points()  # only the named plugin is imported
        if name not in points:
            known = ", ".join(points) or "none installed"
            raise UnknownTargetError(f"unknown target '{name}' (known: {known})")
        entry = _entry(name, points[name])
    if entry.target_type is None:
        raise UnknownTargetError(f"target '{name}' cannot be loaded: {entry.load_error}")
    target = entry.target_type()
    info = entry.info()
    if not info.available:
        raise UnknownTargetError(f"target '{name}' is not available here: {info.why_not}")
    return target
