"""Entry point of the `runner` command.

Each command group lives in its own module, which registers its sub-commands on the group's
parser. Only the group the command line names is imported: the others' modules pull in onnx,
numpy or TVM, and `runner --help` or `runner zoo list` must not wait for them. Errors caused by
the user's input (`AsicperfError`) end as one line on stderr and exit status 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib.metadata import version

from ir.errors import AsicperfError

EXIT_USAGE = 2


@dataclass(frozen=True)
class CommandGroup:
    """A `runner` command group: its one-line help, and the module (imported only when the
    group runs) whose `register(parser)` adds its sub-commands and options."""

    name: str
    module: str
    help: str


GROUPS = (
    CommandGroup("ir", "runner.ir_commands", "inspect, verify and re-serialize models"),
    CommandGroup("passes", "runner.passes_commands", "apply audited optimization pipelines"),
    CommandGroup("hw", "runner.hw_commands", "published accelerator specs and the host machine"),
    CommandGroup(
        "targets", "runner.targets_commands", "installed targets (compile + runtime plugins)"
    ),
    CommandGroup("run", "runner.run_command", "one inference on a target, optionally compared"),
    CommandGroup(
        "zoo", "runner.zoo_commands", "models built locally (no download), and their data"
    ),
    CommandGroup(
        "bench",
        "runner.bench_command",
        "model throughput and latency per batch size (on MLPerf LoadGen), or op kernels against "
        "the roofline",
    ),
    CommandGroup(
        "profile",
        "runner.profile_command",
        "per-layer times on a target, in the IR's node ids, each against the roofline",
    ),
    CommandGroup(
        "report", "runner.report_commands", "read results: terminal view, comparison, HTML"
    ),
    CommandGroup(
        "sweep",
        "runner.sweep_command",
        "a sweep file's benchmarks (models x targets x pipelines x batch sizes) spread over Ray",
    ),
    CommandGroup(
        "node", "runner.sweep.node_command", "make this machine a Ray node that runs sweep jobs"
    ),
)
GROUP_NAMES = frozenset(group.name for group in GROUPS)


def build_parser(loaded: Collection[str] = GROUP_NAMES) -> argparse.ArgumentParser:
    """The `runner` parser; the groups in `loaded` get their sub-commands, the others only
    their name and help (enough for `runner --help`)."""
    parser = argparse.ArgumentParser(
        prog="runner",
        description="asicperf: inspect models, apply audited passes, benchmark targets.",
    )
    parser.add_argument("--version", action="version", version=f"asicperf {version('asicperf')}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for group in GROUPS:
        group_parser = groups.add_parser(group.name, help=group.help)
        if group.name in loaded:
            importlib.import_module(group.module).register(group_parser)
    return parser


def named_group(argv: Sequence[str]) -> set[str]:
    """The group the command line names: its first word that is not an option (`runner`'s own
    options, --help and --version, take no value)."""
    words = [word for word in argv if not word.startswith("-")]
    return {words[0]} if words else set()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(loaded=named_group(argv)).parse_args(argv)
    args.command_line = ["runner", *argv]  # recorded in result documents
    try:
        return args.handler(args)
    except AsicperfError as error:
        print(f"runner: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `runner ir show big.onnx | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
