"""Sweeps on Ray at scale, and what Ray costs each job, behind docs/benchmarks/sweep-scale.md.

    unshare -n bash -c "ip link set lo up && python docs/benchmarks/sweep_scale.py"

(the network namespace keeps Ray on loopback; on a machine where that does not matter, run the
script alone). Both parts run on a local Ray cluster, `ray.cluster_utils.Cluster`: a head node
and worker nodes, each a raylet of its own on this machine, with the custom resources
`runner node start` gives a real one.

1. Scale: 1,000 short jobs over 20 nodes of one bench slot each. Each job runs a stand-in for
   `runner bench` (the engine's injectable executor) that sleeps SHORT_JOB_S and writes a
   result.json naming its job, so the figures are the distribution's alone. Checked: every job
   has exactly one folder, holding its own result, done at its first attempt; no folder is
   missing, extra or half-written.
2. Overhead: real `runner bench` jobs (digits-cnn, batch 1, 0.1 s) on 2 nodes, the per-job
   scheduling overhead as job.json defines it (driver-observed time minus the benchmark's own).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from ir.files import write_text_atomically
from runner.sweep.engine import run_sweep
from runner.sweep.job_record import JOB_FILE, read_job_record
from runner.sweep.jobs import Job, new_job
from runner.sweep.summary import SweepSummary
from runner.sweep.task import BenchRun
from targets.device import host_device

OUT = Path(__file__).with_name("sweep-scale.md")
SHORT_JOB_S = 0.1
STORE = 80 * 2**20  # each node's object store
NODE = {"bench_slot": 1.0, "target:onnxruntime": 1.0, "target:reference": 1.0, "hardware:host": 1.0}
QUICK = {"min_duration": 0.1, "min_queries": 8}


def short_job(job: Job, folder: Path) -> BenchRun:
    """The stand-in benchmark: a short wait, and a result that says which job wrote it."""
    time.sleep(SHORT_JOB_S)
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"job": job.id}))
    return BenchRun(0, "")


def start_cluster(nodes: int) -> Cluster:
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": STORE}
    )
    for _ in range(nodes):
        cluster.add_node(num_cpus=0, resources=NODE, object_store_memory=STORE)
    cluster.wait_for_nodes()
    return cluster


def sweep_jobs(count: int, settings: dict[str, float]) -> list[Job]:
    """`count` distinct jobs: two targets, batch sizes 1, 2, ..."""
    return [
        new_job(0, "model", model="digits-cnn", target=target, batch=size, settings=settings)
        for size in range(1, count // 2 + 1)
        for target in ("onnxruntime", "reference")
    ]


def check_folders(out: Path, jobs: list[Job]) -> list[str]:
    """What is wrong with the results folder: a job without a done folder, a folder of no job
    or half-written, a result of another job, a job run more than once."""
    problems = []
    wanted = {job.id for job in jobs}
    folders = {path.name for path in out.iterdir() if path.is_dir()}
    problems += [f"missing: {job_id}" for job_id in sorted(wanted - folders)]
    problems += [f"extra: {name}" for name in sorted(folders - wanted)]
    for job_id in sorted(wanted & folders):
        record = read_job_record(out / job_id)
        if record is None or record.status != "done" or record.attempts != 1:
            problems.append(f"{job_id}: {record and (record.status, record.attempts)}")
        result = json.loads((out / job_id / "result.json").read_text())
        if result != {"job": job_id}:
            problems.append(f"{job_id}: holds {result}")
        if sorted(p.name for p in (out / job_id).iterdir()) != [JOB_FILE, "result.json"]:
            problems.append(f"{job_id}: files {sorted(p.name for p in (out / job_id).iterdir())}")
    return problems


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def overhead_row(label: str, summary: SweepSummary) -> str:
    overheads = summary.overheads()
    figures = (statistics.median(overheads), percentile(overheads, 0.9), max(overheads))
    return f"| {label} | {len(overheads)} | " + " | ".join(f"{f:.3f}" for f in figures) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--real-jobs", type=int, default=8, help="real benchmarks on 2 nodes")
    args = parser.parse_args()

    began = time.monotonic()
    cluster = start_cluster(args.nodes)
    cluster_s = time.monotonic() - began
    jobs = sweep_jobs(args.jobs, {})
    with tempfile.TemporaryDirectory(prefix="sweep-scale-") as scratch:
        out = Path(scratch)
        driver_cpu = time.process_time()
        scale = run_sweep(
            jobs, address=cluster.address, out=out, resume=False, progress=True, execute=short_job
        )
        driver_cpu = time.process_time() - driver_cpu
        problems = check_folders(out, jobs)
    cluster.shutdown()
    per_node = Counter(record.node.id for record in scale.records if record.node)

    cluster = start_cluster(2)
    real_jobs = sweep_jobs(args.real_jobs, QUICK)
    with tempfile.TemporaryDirectory(prefix="sweep-real-") as scratch:
        real = run_sweep(
            real_jobs, address=cluster.address, out=Path(scratch), resume=False, progress=True
        )
    cluster.shutdown()
    bench_s = [record.bench_seconds or 0.0 for record in real.records]

    ideal_s = len(jobs) * SHORT_JOB_S / args.nodes
    verdict = "none lost, none duplicated" if not problems else f"{len(problems)} PROBLEMS"
    lines = [
        "# Sweeps on Ray: scale and per-job overhead",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} by `docs/benchmarks/sweep_scale.py` on "
        f"{host_device()}, Ray {ray.__version__}: a local cluster "
        "(`ray.cluster_utils.Cluster`, every node a raylet of its own on this one machine, so "
        "the nodes share its cores).",
        "",
        f"## {len(jobs):,} short jobs over {args.nodes} nodes",
        "",
        f"Each job holds its node's one bench slot and runs a stand-in benchmark that sleeps "
        f"{SHORT_JOB_S} s and writes a result.json naming its job; the driver writes each job's "
        f"folder as its result arrives. Starting the {args.nodes} nodes took {cluster_s:.1f} s.",
        "",
        "| jobs | nodes | done | failed | unschedulable | wall (s) | ideal wall (s) | jobs/s "
        "| driver CPU per job (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(jobs)} | {args.nodes} | {scale.count('done')} | {scale.count('failed')} | "
        f"{scale.count('unschedulable')} | {scale.wall_seconds:.1f} | {ideal_s:.1f} | "
        f"{len(jobs) / scale.wall_seconds:.1f} | {driver_cpu / len(jobs) * 1000:.1f} |",
        "",
        f"Result check: {verdict} — every job has exactly one folder, with its own result.json "
        "and a job.json saying done at the first attempt, and there is no other folder.",
        *(f"- {problem}" for problem in problems[:20]),
        "",
        f"Jobs per node: {min(per_node.values())} to {max(per_node.values())}. The ideal wall "
        f"time is every slot busy all the time (jobs x {SHORT_JOB_S} s / nodes); here "
        f"{args.nodes} raylets, their worker processes, Ray's GCS and the driver share "
        f"{os.cpu_count()} CPU threads, so the wall time and the overheads below measure that "
        "contention more than Ray: a real lab gives every node its own machine. The driver's "
        "CPU time per job (gathering a result, writing its folder, keeping sweep.json) bounds "
        "how many jobs per second one driver can gather.",
        "",
        "## Scheduling overhead per job",
        "",
        "Driver-observed time (from the moment a job could start: its submission, or its node's "
        "previous job handing the bench slot back) to its result arriving at the driver, minus "
        "the benchmark's own wall time. Seconds:",
        "",
        "| jobs | count | median | p90 | max |",
        "|---|---:|---:|---:|---:|",
        overhead_row(f"{len(jobs)} short jobs, {args.nodes} nodes", scale),
        overhead_row("real `runner bench` (digits-cnn, batch 1), 2 nodes", real),
        "",
        f"The real benchmarks took {statistics.median(bench_s):.2f} s each (median) in their "
        "own process. A node's first job also pays for starting its Ray worker process (the max); "
        "the ones after it reuse that worker.",
        "",
    ]
    write_text_atomically(OUT, "\n".join(lines))
    print(f"wrote {OUT}")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
