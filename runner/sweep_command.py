"""`runner sweep SWEEP.toml`: every job of a sweep file (runner/sweep/sweep_file.py) run on Ray,
in a Ray instance inside this process or on a cluster (`--address`), each job's results under
`--out/<job id>/`; `--dry-run` lists the jobs and where each could run instead.

The sweep file is read and checked before Ray starts, and Ray is imported only when it is
needed (a run, or a dry run that asks a cluster), so a bad file or a missing Ray is one line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ir.errors import AsicperfError
from runner.bench_output import results_folder
from runner.console import console, table
from runner.sweep.job_record import NodeRef
from runner.sweep.jobs import Job
from runner.sweep.placement import NodeResources, placement_problem
from runner.sweep.resources import BENCH_SLOT
from runner.sweep.sweep_file import load_sweep

RAY_MISSING = "runner sweep needs Ray: pip install 'asicperf[sweep]'"
DRY_RUN_COLUMNS = (
    "id",
    "run",
    "level",
    "model / suite",
    "target",
    "pipeline",
    "batch",
    "scenario",
    "could run on",
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file (docs/sweeps.md)")
    parser.add_argument(
        "--address",
        metavar="auto|HOST:PORT",
        help="join this running Ray cluster; default: a Ray instance inside this process",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="results folder; default bench-results/sweep-<file stem>"
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip the jobs whose folder in --out says done"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the jobs and where each could run (with --address: on which nodes)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the jobs (--dry-run) or the summary as JSON"
    )
    parser.set_defaults(handler=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    if not args.dry_run or (args.address is not None and not args.json):
        require_ray()  # to run, or to ask the cluster where each job could run
    path = Path(args.sweep)
    jobs = load_sweep(path).jobs()
    if args.dry_run:
        return _dry_run(jobs, args.address, as_json=args.json)
    out = results_folder(args.out, ("sweep", path.stem))
    from runner.sweep.engine import run_sweep  # imports Ray
    from runner.sweep.summary import print_summary

    summary = run_sweep(
        jobs, address=args.address, out=out, resume=args.resume, progress=not args.json
    )
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print_summary(summary)
    finished = not summary.interrupted and not summary.pending
    return 0 if finished and summary.count("done") == len(summary.records) else 1


def require_ray() -> None:
    """Ray is installed; the one-line install command otherwise."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise AsicperfError(RAY_MISSING) from None


def _dry_run(jobs: Sequence[Job], address: str | None, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"jobs": [job.to_json() for job in jobs]}, indent=2))
        return 0
    nodes = None if address is None else _cluster_nodes(address)
    listing = table(f"{len(jobs)} jobs", *DRY_RUN_COLUMNS)
    for job in jobs:
        listing.add_row(
            job.id,
            str(job.run),
            job.level,
            job.model or job.suite or "",
            job.target,
            job.pipeline or "none",
            "" if job.batch is None else str(job.batch),
            job.scenario or "workload's",
            where_it_could_run(job, nodes),
        )
    console().print(listing)
    return 0


def where_it_could_run(job: Job, nodes: Mapping[str, NodeResources] | None) -> str:
    """The nodes (by name) that have every resource the job asks for, or why none can;
    without a cluster to ask (`nodes` None), what such a node needs besides a bench slot."""
    needs = job.resources()
    if nodes is None:
        return "any node with " + " and ".join(name for name in needs if name != BENCH_SLOT)
    fitting = [name for name, offered in nodes.items() if not placement_problem(needs, [offered])]
    return ", ".join(fitting) or str(placement_problem(needs, list(nodes.values())))


def _cluster_nodes(address: str) -> dict[str, NodeResources]:
    """The live nodes of the cluster at `address`, by "hostname (ip, node id)", with their
    resources; joined as a sweep joins it (an address that does not answer is one line)."""
    import ray

    from runner.sweep.engine import connected

    with connected(address):
        live = [node for node in ray.nodes() if node["Alive"]]
    return {
        NodeRef(
            id=node["NodeID"], hostname=node["NodeManagerHostname"], ip=node["NodeManagerAddress"]
        ).label(): node["Resources"]
        for node in live
    }
