"""Entry point of the `runner` command.

Each command group lives in its own module and registers its sub-parser here. Errors caused by
the user's input (`AsicperfError`) end as one line on stderr and exit status 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version

from ir.errors import AsicperfError
from runner import (
    bench_command,
    hw_commands,
    ir_commands,
    passes_commands,
    report_commands,
    run_command,
    targets_commands,
    zoo_commands,
)

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner",
        description="asicperf: inspect models, apply audited passes, benchmark targets.",
    )
    parser.add_argument("--version", action="version", version=f"asicperf {version('asicperf')}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    ir_commands.register(groups)
    passes_commands.register(groups)
    hw_commands.register(groups)
    targets_commands.register(groups)
    run_command.register(groups)
    zoo_commands.register(groups)
    bench_command.register(groups)
    report_commands.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
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
