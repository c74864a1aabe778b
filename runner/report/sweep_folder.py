"""A sweep's results folder read back for the report: every job's record (`<job id>/job.json`,
runner/sweep/job_record.py) and, for each job that is done, the result document beside it, so
a sweep folder is given to `runner report html` like any result folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.results.files import RESULT_FILE, Result, read_result
from runner.results.record import ResultError
from runner.sweep.job_record import JOB_FILE, JobRecord, read_job_record
from runner.sweep.jobs import Job
from runner.sweep.summary import SWEEP_FILE


@dataclass(frozen=True)
class SweepJob:
    """One job of a sweep folder: its record, the job itself, its folder, and its result when
    it is done."""

    record: JobRecord
    job: Job
    folder: Path
    result: Result | None


@dataclass(frozen=True)
class SweepFolder:
    path: Path
    jobs: tuple[SweepJob, ...]  # in the sweep's order: run, model or suite, target, ...

    def results(self) -> list[tuple[str, Result]]:
        """(the job's folder, its result) for every job that is done."""
        return [(str(job.folder), job.result) for job in self.jobs if job.result is not None]


def is_sweep_folder(path: str | Path) -> bool:
    """A folder with no result of its own, holding sweep.json or a job folder."""
    path = Path(path)
    if not path.is_dir() or (path / RESULT_FILE).exists():
        return False
    return (path / SWEEP_FILE).is_file() or any(path.glob(f"*/{JOB_FILE}"))


def read_sweep_folder(path: str | Path) -> SweepFolder:
    """Every job folder's record, and the result of each done job; a one-line ResultError
    naming the file that cannot be read."""
    path = Path(path)
    jobs = []
    for folder in sorted(path.iterdir()):
        if folder.name.startswith("."):  # a job folder still being written, or being replaced
            continue
        record = read_job_record(folder) if folder.is_dir() else None
        if record is None:
            continue
        try:
            job = Job.from_json(record.job, f"{folder / JOB_FILE}: job")
        except ValueError as error:
            raise ResultError(str(error)) from None
        result = read_result(folder) if record.status == "done" else None
        jobs.append(SweepJob(record, job, folder, result))
    if not jobs:
        raise ResultError(f"{path}: no job folders (<job id>/{JOB_FILE}) in this sweep folder")
    jobs.sort(key=lambda entry: _order(entry.job))
    return SweepFolder(path, tuple(jobs))


def _order(job: Job) -> tuple[object, ...]:
    return (
        job.run,
        job.model or job.suite or "",
        job.target,
        job.pipeline,
        job.batch or 0,
        job.id,
    )
