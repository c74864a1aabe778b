"""A sweep's results folder: `<out>/<job id>/` holds what the job's `runner bench --out` wrote,
file for file, plus job.json (runner/sweep/job_record.py).

A job's folder appears whole or not at all: it is written as a hidden sibling and renamed into
place, so an interrupted driver never leaves a folder that looks finished, and `--resume` can
trust any job.json it finds.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from ir.files import write_bytes_atomically
from runner.results.record import ResultError
from runner.sweep.job_record import JOB_FILE, JobRecord, read_job_record


def write_job_folder(out: Path, record: JobRecord, files: Mapping[str, bytes]) -> Path:
    """`out/<job id>/` with `files` (paths relative to the bench's --out) and job.json,
    replacing an earlier folder of that job (a failed try being run again)."""
    final = out / record.job_id
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{record.job_id}."))
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 is for the staging folder, not the result
        for relative, data in files.items():
            write_bytes_atomically(staging / relative, data)
        document = json.dumps(record.to_json(), indent=2) + "\n"
        write_bytes_atomically(staging / JOB_FILE, document.encode("utf-8"))
        _replace_folder(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _replace_folder(new: Path, final: Path) -> None:
    """Rename `new` to `final`; an existing `final` is moved aside first (a folder cannot be
    renamed over a non-empty one) and removed once the new one is in place."""
    if not final.exists():
        os.replace(new, final)
        return
    old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old."))
    os.replace(final, old / final.name)
    os.replace(new, final)
    shutil.rmtree(old)


def finished_records(out: Path, job_ids: Iterable[str]) -> dict[str, JobRecord]:
    """The records of the jobs among `job_ids` whose folder in `out` says done. A job.json that
    cannot be read counts as not done: the job runs again and replaces it."""
    found = {}
    for job_id in job_ids:
        try:
            record = read_job_record(out / job_id)
        except ResultError:
            continue
        if record is not None and record.status == "done":
            found[job_id] = record
    return found
