"""Sweeps on Ray: the driver's bookkeeping (placement checks, the attempt ledger, job folders,
the summary) on small inputs, then real `runner bench` jobs on real local Ray clusters of
several nodes (`ray.cluster_utils.Cluster`, each test's cluster in a network namespace of its
own: tests/ray_netns.py).

Cluster tests take 10 to 40 s (nodes start in seconds, a tiny benchmark in seconds): all but
one are marked slow; the one in the default set runs two jobs on two nodes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ir.errors import AsicperfError
from runner.cli import main
from runner.sweep.job_folder import finished_records, write_job_folder
from runner.sweep.job_record import JOB_FILE, JobRecord, NodeRef, read_job_record
from runner.sweep.jobs import Job, new_job
from runner.sweep.ledger import AttemptLedger
from runner.sweep.placement import placement_problem
from runner.sweep.summary import SweepSummary, print_summary
from tests.ray_netns import run_in_netns

QUICK = {"min_duration": 0.1, "min_queries": 8}  # a benchmark of a few seconds
STORE = 80 * 2**20  # each node's object store: results are kilobytes
NODE_A = NodeRef(id="a" * 56, hostname="alpha", ip="10.0.0.1")
NODE_B = NodeRef(id="b" * 56, hostname="beta", ip="10.0.0.2")


def _job(target: str = "onnxruntime", batch: int = 1, hardware: str | None = None) -> Job:
    return new_job(
        0,
        "model",
        model="digits-cnn",
        target=target,
        batch=batch,
        hardware=hardware,
        settings=QUICK,
    )


def _record(job: Job, status: str = "done", **fields: Any) -> JobRecord:
    return JobRecord(job=job.to_json(), status=status, **fields)


# --- placement -------------------------------------------------------------------------------


def test_a_job_fits_a_node_with_all_it_needs() -> None:
    needs = {"bench_slot": 1.0, "target:tvm": 1.0}
    nodes = [{"bench_slot": 1.0, "target:onnxruntime": 1.0}, {"bench_slot": 1.0, "target:tvm": 1.0}]
    assert placement_problem(needs, nodes) is None


def test_resources_no_node_has_are_named() -> None:
    needs = {"bench_slot": 1.0, "target:tvm": 1.0, "hardware:nvidia-l4": 1.0}
    nodes = [{"bench_slot": 1.0, "target:tvm": 1.0, "hardware:host": 1.0}]
    problem = placement_problem(needs, nodes)
    assert problem == "no node can run it: needs hardware:nvidia-l4"


def test_resources_on_different_nodes_are_named_together() -> None:
    needs = {"bench_slot": 1.0, "target:tvm": 1.0, "hardware:nvidia-l4": 1.0}
    nodes = [
        {"bench_slot": 1.0, "target:tvm": 1.0},
        {"bench_slot": 1.0, "hardware:nvidia-l4": 1.0},
    ]
    assert placement_problem(needs, nodes) == (
        "no node can run it: needs bench_slot + target:tvm + hardware:nvidia-l4 on one node"
    )


# --- the remote side --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exit_code", "stderr", "reason"),
    [
        (2, "loading\nrunner: error: /m.onnx: no such file\n", "/m.onnx: no such file"),
        (
            1,
            "Traceback (most recent call last):\n  ...\nValueError: boom\n",
            "exit status 1: ValueError: boom",
        ),
        (-9, "", "killed by signal 9"),
    ],
)
def test_a_failed_benchmark_is_one_line(exit_code: int, stderr: str, reason: str) -> None:
    pytest.importorskip("ray")
    from runner.sweep.task import failure_reason

    assert failure_reason(exit_code, stderr) == reason


def test_the_ledger_knows_attempts_and_when_their_node_was_free(monkeypatch) -> None:
    """Job y's node gave its slot back at 12 (job x done), before y's second attempt started
    at 20; the release at 25 came after and does not count."""
    clock = iter([10.0, 12.0, 15.0, 20.0, 25.0])
    monkeypatch.setattr("runner.sweep.ledger.time.time", lambda: next(clock))
    ledger = AttemptLedger()
    ledger.started("x", NODE_A, 100)
    ledger.released(NODE_A.id)
    ledger.started("y", NODE_B, 200)  # a worker that dies: no release
    ledger.started("y", NODE_A, 300)
    ledger.released(NODE_A.id)
    entry = ledger.entry("y")
    assert [(a.node.id, a.pid, a.at) for a in entry.attempts] == [
        (NODE_B.id, 200, 15.0),
        (NODE_A.id, 300, 20.0),
    ]
    assert entry.slot_freed_at == 12.0
    assert ledger.entry("x").slot_freed_at is None
    assert ledger.entry("never").attempts == ()
    assert ledger.entries(["x", "y"]) == [ledger.entry("x"), entry]


# --- job folders ------------------------------------------------------------------------------


def test_a_job_folder_holds_the_bench_files_and_its_record(tmp_path: Path) -> None:
    job = _job()
    files = {"result.json": b"{}", "loadgen/batch-1/mlperf_log_summary.txt": b"VALID"}
    folder = write_job_folder(tmp_path, _record(job, attempts=1), files)
    assert folder == tmp_path / job.id
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert found == [JOB_FILE, "loadgen/batch-1/mlperf_log_summary.txt", "result.json"]
    assert read_job_record(folder) == _record(job, attempts=1)
    assert [p.name for p in tmp_path.iterdir()] == [job.id]  # no staging folder left


def test_a_job_run_again_replaces_its_folder(tmp_path: Path) -> None:
    job = _job()
    write_job_folder(tmp_path, _record(job, "failed", reason="x"), {"stderr.txt": b"x"})
    folder = write_job_folder(tmp_path, _record(job), {"result.json": b"{}"})
    assert sorted(p.name for p in folder.iterdir()) == [JOB_FILE, "result.json"]
    assert [p.name for p in tmp_path.iterdir()] == [job.id]


def test_only_done_jobs_are_finished(tmp_path: Path) -> None:
    done, failed, broken, missing = (_job(batch=size) for size in (1, 2, 3, 4))
    write_job_folder(tmp_path, _record(done), {})
    write_job_folder(tmp_path, _record(failed, "failed", reason="x"), {})
    (tmp_path / broken.id).mkdir()
    (tmp_path / broken.id / JOB_FILE).write_text("{not json")
    ids = [job.id for job in (done, failed, broken, missing)]
    assert list(finished_records(tmp_path, ids)) == [done.id]


# --- the summary ------------------------------------------------------------------------------


def _summary(tmp_path: Path) -> SweepSummary:
    one, two, three, four, five = (_job(batch=size) for size in (1, 2, 3, 4, 5))
    records = (
        _record(one, node=NODE_A, overhead_seconds=0.5),
        _record(two, node=NODE_A, overhead_seconds=0.25),
        _record(three, node=NODE_B, overhead_seconds=2.0),
        _record(four, "failed", node=NODE_B, reason="target refused", overhead_seconds=9.0),
        _record(five, "unschedulable", reason="no node can run it: needs target:tvm"),
    )
    return SweepSummary(
        out=tmp_path,
        address="local",
        records=records,
        resumed=(three.id,),  # its overhead is an earlier run's
        pending=(),
        wall_seconds=12.5,
    )


def test_the_summary_counts_nodes_and_overhead(tmp_path: Path) -> None:
    document = _summary(tmp_path).to_json()
    assert document["counts"] == {
        "done": 3,
        "failed": 1,
        "unschedulable": 1,
        "resumed": 1,
        "pending": 0,
    }
    assert [(n["node"]["hostname"], n["done"], n["failed"]) for n in document["nodes"]] == [
        ("alpha", 2, 0),
        ("beta", 1, 1),
    ]
    assert document["overhead_seconds"] == {"jobs": 2, "median": 0.375, "max": 0.5}
    assert len(document["jobs"]) == 5


def test_the_closing_tables_name_failures_and_totals(tmp_path: Path, capsys) -> None:
    summary = _summary(tmp_path)
    print_summary(summary)
    out = capsys.readouterr().out
    failed = summary.records[3].job_id
    assert "alpha (10.0.0.1, aaaaaaaa)" in out
    assert failed in out and "target refused" in out
    assert "no node can run it: needs target:tvm" in out
    assert (
        "5 jobs: 3 done, 1 failed, 1 unschedulable, 1 from an earlier run; wall time 12.5 s; "
        "scheduling overhead per job: median 0.375 s, max 0.500 s"
    ) in out


def test_a_sweep_whose_jobs_are_all_done_starts_no_ray(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from runner.sweep.engine import run_sweep

    jobs = [_job(batch=1), _job(batch=2)]
    for job in jobs:
        write_job_folder(tmp_path, _record(job, node=NODE_A), {"result.json": b"{}"})
    summary = run_sweep(jobs, address="10.255.255.1:1", out=tmp_path, resume=True, progress=False)
    assert not ray.is_initialized()
    assert summary.resumed == tuple(job.id for job in jobs)
    assert json.loads((tmp_path / "sweep.json").read_text())["counts"]["resumed"] == 2


# --- on a local Ray cluster (each in its own network namespace) ---------------------------------


def _start_cluster(nodes: list[dict[str, float]]) -> tuple[Any, list[Any]]:
    """A head node with nothing to offer but the driver's place, and `nodes` with the given
    custom resources (no CPUs: a job asks for none, its bench slot is what it holds)."""
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 0, "object_store_memory": STORE}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    added = [
        cluster.add_node(num_cpus=0, resources=resources, object_store_memory=STORE)
        for resources in nodes
    ]
    return cluster, added


def _jobs(documents: list[dict[str, Any]]) -> list[Job]:
    return [Job.from_json(document, "test job") for document in documents]


def sweep_on_cluster(nodes: list[dict[str, float]], jobs: list[dict[str, Any]], out: str) -> Any:
    """Child side: run the sweep on a fresh cluster; the nodes' ids, in order."""
    from runner.sweep.engine import run_sweep

    cluster, added = _start_cluster(nodes)
    try:
        run_sweep(_jobs(jobs), address=cluster.address, out=Path(out), resume=False, progress=False)
    finally:
        cluster.shutdown()
    return [node.node_id for node in added]


def _node(*targets: str, hardware: str = "host") -> dict[str, float]:
    names = ["bench_slot", *(f"target:{name}" for name in targets), f"hardware:{hardware}"]
    return dict.fromkeys(names, 1.0)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_jobs_land_where_their_target_is_in_runner_bench_layout(tmp_path: Path, capsys) -> None:
    """Two nodes, one target each, one job per target: each job ran on its target's node, and
    its folder holds what `runner bench --out` writes for that job, file for file, plus
    job.json."""
    jobs = [_job("onnxruntime"), _job("reference")]
    out = tmp_path / "sweep"
    nodes = [_node("onnxruntime"), _node("reference")]
    node_ids = run_in_netns(
        sweep_on_cluster, nodes=nodes, jobs=[job.to_json() for job in jobs], out=str(out)
    )
    for job, node_id in zip(jobs, node_ids, strict=True):
        record = read_job_record(out / job.id)
        assert record is not None
        assert (record.status, record.attempts, record.node and record.node.id) == (
            "done",
            1,
            node_id,
        )
        assert record.bench_seconds is not None and record.overhead_seconds is not None
    alone = tmp_path / "alone"
    assert main(jobs[0].bench_argv(alone)) == 0
    capsys.readouterr()
    assert _files(out / jobs[0].id) == sorted([*_files(alone), JOB_FILE])
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["counts"]["done"] == 2 and summary["pending"] == []


@pytest.mark.slow
def test_jobs_land_on_their_hardware_and_missing_hardware_is_reported(tmp_path: Path) -> None:
    jobs = [_job(hardware="nvidia-t4"), _job(hardware="host"), _job(hardware="nvidia-l4")]
    out = tmp_path / "sweep"
    nodes = [_node("onnxruntime", hardware="host"), _node("onnxruntime", hardware="nvidia-t4")]
    host_node, t4_node = run_in_netns(
        sweep_on_cluster, nodes=nodes, jobs=[job.to_json() for job in jobs], out=str(out)
    )
    records = [read_job_record(out / job.id) for job in jobs]
    assert [(r.status, r.node.id if r.node else None) for r in records if r] == [
        ("done", t4_node),
        ("done", host_node),
        ("unschedulable", None),
    ]
    assert records[2] and records[2].reason == "no node can run it: needs hardware:nvidia-l4"


@pytest.mark.slow
def test_no_two_jobs_share_a_node_at_once(tmp_path: Path) -> None:
    """Six jobs over two nodes of one bench slot each: on each node, each job's benchmark
    started after the previous one's had finished."""
    jobs = [_job(target, size) for target in ("onnxruntime", "reference") for size in (1, 2, 3)]
    out = tmp_path / "sweep"
    nodes = [_node("onnxruntime", "reference")] * 2
    run_in_netns(sweep_on_cluster, nodes=nodes, jobs=[job.to_json() for job in jobs], out=str(out))
    by_node: dict[str, list[tuple[str, str]]] = {}
    for job in jobs:
        record = read_job_record(out / job.id)
        assert record and record.status == "done" and record.node
        assert record.started and record.finished
        by_node.setdefault(record.node.id, []).append((record.started, record.finished))
    assert len(by_node) == 2
    for intervals in by_node.values():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert start >= end


def kill_mid_job(job: dict[str, Any], out: str, how: str) -> Any:
    """Child side: one job on a cluster of two nodes that can both run it; once it has started,
    kill its worker process (`how` "worker") or remove its node ("node"). Returns the nodes'
    ids and the first attempt's node."""
    import ray

    from runner.sweep.engine import run_sweep
    from runner.sweep.ledger import LEDGER_NAME

    cluster, added = _start_cluster([_node("onnxruntime")] * 2)
    errors: list[str] = []

    def sweep_jobs() -> None:
        try:
            run_sweep(
                _jobs([job]), address=cluster.address, out=Path(out), resume=False, progress=False
            )
        except Exception as error:
            errors.append(repr(error))

    sweep = threading.Thread(target=sweep_jobs)
    sweep.start()
    attempts = ()
    while not attempts:
        time.sleep(0.2)
        if ray.is_initialized():
            try:
                attempts = ray.get(ray.get_actor(LEDGER_NAME).entry.remote(job["id"])).attempts
            except ValueError:  # the ledger is not up yet
                continue
    assert ray.get_runtime_context().get_node_id() == cluster.head_node.node_id
    time.sleep(1.0)  # into the benchmark
    first = attempts[0]
    if how == "worker":
        os.kill(first.pid, signal.SIGKILL)
    else:
        cluster.remove_node(next(n for n in added if n.node_id == first.node.id))
    sweep.join()
    cluster.shutdown()
    return {"nodes": [node.node_id for node in added], "first": first.node.id, "errors": errors}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["worker", "node"])
def test_a_job_whose_worker_dies_is_run_again(tmp_path: Path, how: str) -> None:
    job = _job()
    out = tmp_path / "sweep"
    seen = run_in_netns(kill_mid_job, job=job.to_json(), out=str(out), how=how)
    assert seen["errors"] == []
    record = read_job_record(out / job.id)
    assert record and record.status == "done" and record.node
    assert record.attempts == 2 and record.attempt_nodes[0] == seen["first"]
    assert record.attempt_nodes[1] == record.node.id
    if how == "node":  # retried on the node that was left
        assert record.node.id == next(n for n in seen["nodes"] if n != seen["first"])
    assert (out / job.id / "result.json").is_file()


@pytest.mark.slow
def test_a_failing_job_is_recorded_once_and_the_rest_finish(tmp_path: Path) -> None:
    missing = Job(
        id="0123456789abcdef",
        run=0,
        level="model",
        model=str(tmp_path / "gone.onnx"),  # a file the node does not have
        suite=None,
        target="onnxruntime",
        pipeline="",
        batch=1,
        scenario=None,
        hardware=None,
        settings=QUICK,
    )
    good = _job()
    out = tmp_path / "sweep"
    documents = [missing.to_json(), good.to_json()]
    run_in_netns(sweep_on_cluster, nodes=[_node("onnxruntime")], jobs=documents, out=str(out))
    failed = read_job_record(out / missing.id)
    assert failed and (failed.status, failed.attempts, failed.exit_code) == ("failed", 1, 2)
    assert failed.reason == f"{tmp_path / 'gone.onnx'}: no such file"
    assert failed.reason in (out / missing.id / "stderr.txt").read_text()
    assert _files(out / missing.id) == [JOB_FILE, "stderr.txt"]
    done = read_job_record(out / good.id)
    assert done and done.status == "done"


_DRIVER = """
import json, sys
from pathlib import Path
from runner.sweep.engine import run_sweep
from runner.sweep.jobs import Job
address, out, resume, documents = sys.argv[1:5]
jobs = [Job.from_json(document, "job") for document in json.loads(documents)]
run_sweep(jobs, address=address, out=Path(out), resume=resume == "resume", progress=False)
"""


def interrupt_then_resume(jobs: list[dict[str, Any]], out: str) -> Any:
    """Child side: a driver process interrupted (SIGINT) once its first job is written, then a
    second driver with --resume, both on one single-node cluster. Returns both exit statuses
    and the first driver's sweep.json."""
    cluster, _ = _start_cluster([_node("onnxruntime")])
    driver = [sys.executable, "-c", _DRIVER, cluster.address, out]
    try:
        first = subprocess.Popen([*driver, "fresh", json.dumps(jobs)])
        while not any(Path(out, job["id"], JOB_FILE).exists() for job in jobs):
            time.sleep(0.1)
        first.send_signal(signal.SIGINT)
        interrupted = first.wait(timeout=60)
        after_first = json.loads(Path(out, "sweep.json").read_text())
        resumed = subprocess.run([*driver, "resume", json.dumps(jobs)], check=False, timeout=180)
    finally:
        cluster.shutdown()
    return {"first": interrupted, "second": resumed.returncode, "after_first": after_first}


@pytest.mark.slow
def test_resume_after_an_interrupted_driver_runs_only_what_is_missing(tmp_path: Path) -> None:
    jobs = [_job(batch=size) for size in (1, 2, 3)]
    out = tmp_path / "sweep"
    seen = run_in_netns(interrupt_then_resume, jobs=[job.to_json() for job in jobs], out=str(out))
    assert seen["first"] != 0 and seen["second"] == 0
    first = seen["after_first"]
    done_first = [r["job"]["id"] for r in first["jobs"] if r["status"] == "done"]
    assert first["interrupted"] and done_first and first["pending"]
    assert sorted(done_first + first["pending"]) == sorted(job.id for job in jobs)
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["resumed"] == done_first
    assert summary["counts"] == {
        "done": 3,
        "failed": 0,
        "unschedulable": 0,
        "resumed": len(done_first),
        "pending": 0,
    }
    for record in first["jobs"]:  # the first driver's results, untouched
        assert read_job_record(out / record["job"]["id"]) == JobRecord.from_json(record)


def address_without_ray(job: dict[str, Any], out: str) -> Any:
    """Child side: --address at a port that accepts connections but is no Ray cluster."""
    import socket

    from runner.sweep.engine import run_sweep

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        began = time.monotonic()
        try:
            run_sweep(_jobs([job]), address=address, out=Path(out), resume=False, progress=False)
        except AsicperfError as error:
            return {"error": str(error), "address": address, "seconds": time.monotonic() - began}
    return {"error": None}


@pytest.mark.slow
def test_an_address_that_does_not_answer_is_one_line_within_30_s(tmp_path: Path) -> None:
    seen = run_in_netns(address_without_ray, job=_job().to_json(), out=str(tmp_path))
    assert seen["error"] == f"--address {seen['address']}: no Ray cluster answered in 30 s"
    assert seen["seconds"] < 35


def runner_sweep(argv: list[str]) -> Any:
    """Child side: `runner ARGV` in this process; its exit status and what it printed."""
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    return {"status": status, "stdout": printed.getvalue()}


@pytest.mark.slow
def test_runner_sweep_runs_a_sweep_file_in_a_local_ray(tmp_path: Path) -> None:
    """No --address: Ray starts inside the process, offering this machine's targets."""
    sweep = tmp_path / "lab.toml"
    sweep.write_text(
        '[[runs]]\nlevel = "model"\nmodels = ["digits-cnn"]\n'
        'targets = ["onnxruntime", "reference"]\nbatch = [1]\n'
        "min_duration = 0.1\nmin_queries = 8\n"
    )
    out = tmp_path / "results"
    seen = run_in_netns(runner_sweep, argv=["sweep", str(sweep), "--out", str(out), "--json"])
    assert seen["status"] == 0
    summary = json.loads(seen["stdout"])
    assert summary["address"] == "local" and summary["counts"]["done"] == 2
    assert len(summary["nodes"]) == 1 and summary["nodes"][0]["done"] == 2
    for record in summary["jobs"]:
        assert (out / record["job"]["id"] / "result.json").is_file()
