"""Finding targets: every target, built-in or a vendor's, registers under the entry-point group
`asicperf.targets` (name = target name, value = `module:Class`). Nothing in the core names a
target, so a vendor's package adds one by being installed."""

from __future__ import annotations

from ir.errors import AsicperfError, first_line
from targets.api import Target, TargetInfo
from targets.plugins import PluginEntry, PluginGroup

ENTRY_POINT_GROUP = "asicperf.targets"


class UnknownTargetError(AsicperfError):
    """No installed target has that name, or it cannot load."""


TARGETS: PluginGroup[Target] = PluginGroup(ENTRY_POINT_GROUP, "target", Target, UnknownTargetError)


def describe(entry: PluginEntry[Target]) -> TargetInfo:
    """The target's own info; a plugin that fails to import or to describe itself is listed as
    unavailable with the reason instead of taking `runner targets list` down."""
    if entry.plugin_type is None:
        return TargetInfo(entry.name, "?", "?", available=False, why_not=entry.load_error)
    try:
        return entry.plugin_type().info()
    except Exception as error:  # the vendor's code: a driver probe may fail any way
        why = f"info() failed: {first_line(error)}"
        return TargetInfo(entry.name, "?", "?", available=False, why_not=why)


def discover() -> dict[str, PluginEntry[Target]]:
    """All registered targets by name, each imported (or with the reason it failed)."""
    return TARGETS.discover()


def get_target(name: str) -> Target:
    """An instance of the target called `name`, ready to compile; a one-line error otherwise.

    `name` may also be `module:Class`, a target not (yet) registered, for its developer.
    """
    target = TARGETS.load(name)()
    info = target.info()
    if not info.available:
        raise UnknownTargetError(f"target '{name}' is not available here: {info.why_not}")
    return target
