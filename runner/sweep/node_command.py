"""`runner node start`: make this machine a Ray node that runs sweep jobs, advertising what it
has as custom resources (runner/sweep/resources.py): its bench slots, one `target:` resource per
target available here, and its hardware slugs. It is `ray start` with those resources filled in;
`--print` shows that plain command, for a lab that starts its nodes some other way."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess

from ir.errors import AsicperfError
from runner.sweep.address import host_and_port
from runner.sweep.resources import node_resources

RAY_MISSING = "runner node needs Ray: pip install 'asicperf[sweep]'"


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)
    start = commands.add_parser(
        "start", help="start a Ray node offering this machine's targets and bench slots"
    )
    role = start.add_mutually_exclusive_group(required=True)
    role.add_argument("--head", action="store_true", help="start the cluster's head node")
    role.add_argument("--address", metavar="HOST:PORT", help="join the head node at this address")
    start.add_argument(
        "--port", type=int, metavar="N", help="with --head: the port it listens on (Ray: 6379)"
    )
    start.add_argument(
        "--slots",
        type=int,
        default=1,
        metavar="N",
        help="jobs timed at once: 1 per machine (default), or 1 per accelerator; 0 for a machine "
        "that only drives sweeps",
    )
    start.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print the equivalent `ray start` command instead of running it",
    )
    start.set_defaults(handler=start_node)


def ray_start_argv(
    *, head: bool, address: str | None, port: int | None, resources: dict[str, float]
) -> list[str]:
    """The `ray start` command line for this node (checked: a bad address or port is refused
    here, before Ray is started)."""
    argv = ["ray", "start"]
    if head:
        argv.append("--head")
        if port is not None:
            if not 0 < port < 65536:
                raise AsicperfError(f"--port {port}: expected a port number in 1..65535")
            argv.append(f"--port={port}")
    else:
        if port is not None:
            raise AsicperfError("--port: only with --head (a joining node's is in --address)")
        host_and_port(str(address), "--address")
        argv.append(f"--address={address}")
    amounts = {name: int(n) if float(n).is_integer() else n for name, n in resources.items()}
    argv.append(f"--resources={json.dumps(amounts, separators=(',', ':'))}")
    return argv


def start_node(args: argparse.Namespace) -> int:
    if args.slots < 0:
        raise AsicperfError(f"--slots {args.slots}: expected 0 or more")
    argv = ray_start_argv(
        head=args.head, address=args.address, port=args.port, resources=node_resources(args.slots)
    )
    if args.print_only:
        print(shlex.join(argv))
        return 0
    executable = shutil.which("ray")
    if executable is None:
        raise AsicperfError(RAY_MISSING)
    return subprocess.run([executable, *argv[1:]], check=False).returncode
