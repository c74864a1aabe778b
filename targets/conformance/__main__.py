"""`python -m targets.conformance TARGET [TARGET ...] --out docs/conformance.md`.

Runs ONNX's node test cases on each target and writes the page with a JSON per target beside
it (`docs/conformance/<target>.json`), atomically.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ir.errors import AsicperfError
from targets.conformance.document import write_documents
from targets.conformance.node_tests import Status, failing_ops, run_node_tests
from targets.registry import discover


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m targets.conformance",
        description="Run ONNX's backend node tests on targets and write the conformance page.",
    )
    parser.add_argument(
        "targets", nargs="+", metavar="TARGET", help='registered target names: "tvm{cache=false}"'
    )
    parser.add_argument("--out", type=Path, default=Path("docs/conformance.md"))
    args = parser.parse_args(argv)
    reports = []
    try:
        for spec in args.targets:
            report = run_node_tests(spec)
            print(
                f"{spec}: {report.count(Status.PASS)}/{report.ran()} passed "
                f"({report.pass_rate:.1%}), {report.count(Status.SKIPPED)} skipped, "
                f"{len(failing_ops(report))} failing claimed ops, {report.seconds:.1f} s",
                flush=True,
            )
            reports.append(report)
    except AsicperfError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    not_run = sorted(set(discover()) - {report.target for report in reports})
    # quoted where a shell needs it: options are separated by spaces
    command = "python -m targets.conformance " + shlex.join([*args.targets, "--out", str(args.out)])
    for path in write_documents(args.out, reports, not_run, command):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
