"""The entry-point plugin mechanism shared by targets and op providers: found by name or by
`module:Class`, a broken plugin reported without hurting the others, a clash refused."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import targets.plugins as plugins
from ir.errors import AsicperfError
from targets.api import Target
from targets.onnxruntime_target import OnnxRuntimeTarget
from targets.plugins import PluginGroup
from targets.reference_target import ReferenceTarget


class _Unknown(AsicperfError):
    pass


_GROUP: PluginGroup[Target] = PluginGroup("asicperf.test", "widget", Target, _Unknown)
_REFERENCE = "targets.reference_target:ReferenceTarget"


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch):
    def register(*points: tuple[str, str]) -> None:
        entries = [EntryPoint(name, value, _GROUP.group) for name, value in points]
        monkeypatch.setattr(
            plugins, "entry_points", lambda group: entries if group == _GROUP.group else []
        )

    return register


def test_plugins_are_discovered_with_their_load_errors(registered) -> None:
    registered(
        ("ref", _REFERENCE),
        ("broken", "no_such_module:Thing"),
        ("wrong", "ir.errors:AsicperfError"),
        ("ref", _REFERENCE),  # the same package seen twice is one plugin, not a clash
    )
    entries = _GROUP.discover()
    assert list(entries) == ["broken", "ref", "wrong"]
    assert entries["ref"].plugin_type is ReferenceTarget and entries["ref"].source == _REFERENCE
    assert entries["broken"].plugin_type is None
    assert entries["broken"].load_error.startswith("cannot import: No module named")
    assert entries["wrong"].load_error == "ir.errors:AsicperfError is not a Target subclass"
    assert _GROUP.load("ref") is ReferenceTarget


def test_a_name_two_packages_register_is_refused(registered) -> None:
    registered(("ref", _REFERENCE), ("ref", "targets.onnxruntime_target:OnnxRuntimeTarget"))
    with pytest.raises(_Unknown) as caught:
        _GROUP.load("ref")
    assert str(caught.value) == (
        "widget 'ref' cannot be loaded: registered twice, by "
        f"{_REFERENCE} and targets.onnxruntime_target:OnnxRuntimeTarget"
    )


def test_an_import_path_loads_an_unregistered_plugin(registered) -> None:
    registered()
    assert _GROUP.load("targets.onnxruntime_target:OnnxRuntimeTarget") is OnnxRuntimeTarget


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nothing", "unknown widget 'nothing' (known: none installed)"),
        ("no_such_module:Thing", "widget 'no_such_module:Thing' cannot be loaded: cannot import"),
        ("ir.errors:AsicperfError", "is not a Target subclass"),
    ],
)
def test_unknown_or_broken_plugins_are_one_line_errors(registered, name: str, message: str) -> None:
    registered()
    with pytest.raises(_Unknown) as caught:
        _GROUP.load(name)
    assert message in str(caught.value) and "\n" not in str(caught.value)
