"""`runner node start`: the resources a machine advertises to a sweep, the `ray start` command
that advertises them, and the one-line refusals of a bad address, port or slot count."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import pytest

from ir.errors import AsicperfError
from runner.cli import main
from runner.sweep import node_command, resources
from runner.sweep.address import check_answers, host_and_port
from targets.api import TargetInfo
from targets.plugins import PluginEntry

RESOURCES = {"bench_slot": 1.0, "target:onnxruntime": 1.0, "hardware:host": 1.0}


@pytest.fixture
def fixed_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_command, "node_resources", lambda slots: dict(RESOURCES))


def test_print_shows_the_head_nodes_ray_start(fixed_resources, capsys) -> None:
    assert main(["node", "start", "--head", "--port", "6380", "--print"]) == 0
    assert capsys.readouterr().out == (
        "ray start --head --port=6380 "
        """'--resources={"bench_slot":1,"target:onnxruntime":1,"hardware:host":1}'\n"""
    )


def test_print_shows_a_joining_nodes_ray_start(fixed_resources, capsys) -> None:
    assert main(["node", "start", "--address", "10.0.0.5:6379", "--print"]) == 0
    assert capsys.readouterr().out == (
        "ray start --address=10.0.0.5:6379 "
        """'--resources={"bench_slot":1,"target:onnxruntime":1,"hardware:host":1}'\n"""
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--address", "10.0.0.5"],
            "--address '10.0.0.5': expected HOST:PORT, like 10.0.0.5:6379",
        ),
        (
            ["--address", "head:99999"],
            "--address 'head:99999': expected HOST:PORT, like 10.0.0.5:6379",
        ),
        (
            ["--address", "10.0.0.5:6379", "--port", "6380"],
            "--port: only with --head (a joining node's is in --address)",
        ),
        (["--head", "--port", "0"], "--port 0: expected a port number in 1..65535"),
        (["--head", "--slots", "-1"], "--slots -1: expected 0 or more"),
    ],
)
def test_bad_options_are_one_line(fixed_resources, capsys, argv, message) -> None:
    assert main(["node", "start", *argv, "--print"]) == 2
    assert capsys.readouterr().err == f"runner: error: {message}\n"


def test_head_and_address_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["node", "start", "--head", "--address", "10.0.0.5:6379"])
    assert "not allowed with argument" in capsys.readouterr().err


@dataclass
class _Provider:
    hardware: str


def _entry(name: str, plugin_type: object) -> PluginEntry:
    return PluginEntry(name, f"fake:{name}", plugin_type, None)  # type: ignore[arg-type]


def test_node_resources_offer_what_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Available targets and loadable providers, each as target:NAME; their hardware slugs and
    "host"; all in the slot count. An unavailable target and a broken provider are left out."""
    infos = {
        "fast": TargetInfo("fast", "1", "card", available=True, hardware="acme-x1"),
        "cpu": TargetInfo("cpu", "1", "host", available=True, hardware="host"),
        "absent": TargetInfo("absent", "?", "?", available=False, why_not="no driver"),
    }
    targets = {name: _entry(name, object) for name in infos}
    providers = {"kernels": _entry("kernels", _Provider("host")), "broken": _entry("broken", None)}
    monkeypatch.setattr(resources, "discover_targets", lambda: targets)
    monkeypatch.setattr(resources, "describe", lambda entry: infos[entry.name])
    monkeypatch.setattr(resources, "discover_providers", lambda: providers)
    assert resources.node_resources(2) == {
        "bench_slot": 2.0,
        "target:cpu": 2.0,
        "target:fast": 2.0,
        "target:kernels": 2.0,
        "hardware:acme-x1": 2.0,
        "hardware:host": 2.0,
    }
    assert resources.node_resources(0) == {}


def test_resource_names() -> None:
    assert resources.BENCH_SLOT == "bench_slot"
    assert resources.target_resource("tvm") == "target:tvm"
    assert resources.hardware_resource("nvidia-l4") == "hardware:nvidia-l4"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379)),
        ("head.lab:6380", ("head.lab", 6380)),
        ("[::1]:6379", ("::1", 6379)),
    ],
)
def test_addresses_split_into_host_and_port(address, expected) -> None:
    assert host_and_port(address, "--address") == expected


@pytest.mark.parametrize("address", ["head", ":6379", "head:port", "head:0", "he ad:6379"])
def test_malformed_addresses_are_refused(address) -> None:
    with pytest.raises(AsicperfError, match=r"expected HOST:PORT, like 10\.0\.0\.5:6379$"):
        host_and_port(address, "--address")


def test_an_address_where_nothing_listens_is_one_line() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # free once the socket closes, and nothing listens
    with pytest.raises(AsicperfError) as raised:
        check_answers(f"127.0.0.1:{port}", "--address", timeout_s=2)
    assert (
        str(raised.value)
        == f"--address 127.0.0.1:{port}: nothing answers there (Connection refused)"
    )
