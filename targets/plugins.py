"""Finding plugins through Python entry points (name = plugin name, value = `module:Class`), so a
vendor's package adds a target or a kernel provider by being installed and nothing in the core
names it. A broken or doubly registered plugin is reported, never fatal to the others."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from ir.errors import AsicperfError, first_line

T = TypeVar("T")


@dataclass(frozen=True)
class PluginEntry(Generic[T]):
    """One registered plugin: its class, or why it failed to import."""

    name: str
    source: str  # "module:Class", as registered
    plugin_type: type[T] | None
    load_error: str | None


@dataclass(frozen=True)
class PluginGroup(Generic[T]):
    """One entry-point group whose plugins subclass `base`."""

    group: str
    kind: str  # what a plugin is called in messages: "target", "provider"
    base: type[T]
    error: type[AsicperfError]

    def discover(self) -> dict[str, PluginEntry[T]]:
        """Every plugin by name, each imported (or with the reason it failed)."""
        return {name: self._entry(name, points) for name, points in self._points().items()}

    def load(self, name: str) -> type[T]:
        """The class registered as `name`, importing only that plugin; a one-line error otherwise.
        `name` may also be `module:Class`, a plugin not (yet) registered, for its developer."""
        if ":" in name:
            entry = self._load_entry(EntryPoint(name, name, self.group))
        else:
            points = self._points()
            if name not in points:
                known = ", ".join(points) or "none installed"
                raise self.error(f"unknown {self.kind} '{name}' (known: {known})")
            entry = self._entry(name, points[name])
        if entry.plugin_type is None:
            raise self.error(f"{self.kind} '{name}' cannot be loaded: {entry.load_error}")
        return entry.plugin_type

    def _points(self) -> dict[str, list[EntryPoint]]:
        """The same `module:Class` seen twice (two installs of one package) counts once."""
        by_name: dict[str, list[EntryPoint]] = {}
        for point in entry_points(group=self.group):
            if point.value not in (p.value for p in by_name.get(point.name, [])):
                by_name.setdefault(point.name, []).append(point)
        return dict(sorted(by_name.items()))

    def _entry(self, name: str, points: list[EntryPoint]) -> PluginEntry[T]:
        """A name two packages register is refused rather than one silently shadowing the other."""
        if len(points) > 1:
            sources = " and ".join(point.value for point in points)
            return PluginEntry(name, sources, None, f"registered twice, by {sources}")
        return self._load_entry(points[0])

    def _load_entry(self, point: EntryPoint) -> PluginEntry[T]:
        try:
            loaded = point.load()
        except Exception as error:  # a broken plugin must not take the toolkit down
            return PluginEntry(point.name, point.value, None, f"cannot import: {first_line(error)}")
        if not (isinstance(loaded, type) and issubclass(loaded, self.base)):
            message = f"{point.value} is not a {self.base.__name__} subclass"
            return PluginEntry(point.name, point.value, None, message)
        return PluginEntry(point.name, point.value, loaded, None)
