"""A benchmark's finished parts (a batch size, an LLM run), one file each beside the result,
written as soon as each is measured: an interrupted run keeps what it finished, and `--resume`
takes a part back only when its run key matches this run's, never mixing two runs' figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from ir.errors import AsicperfError
from ir.files import write_text_atomically
from runner.bench.run_key import RunKey
from runner.results.record import Record, ResultError

PartRecord = TypeVar("PartRecord", bound=Record)


def write_part(path: Path, key: RunKey, field: str, record: Record) -> Path:
    """`record` under `field`, beside the key of the run that measured it."""
    document = {"key": key.to_json(), field: record.to_json()}
    return write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def read_part(
    path: Path, key: RunKey, field: str, record_type: type[PartRecord]
) -> PartRecord | None:
    """The part at `path` (None when there is none); a file that is not one, or one from a run
    with another key, is a one-line error."""
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        stored = document["key"]
        record = record_type.from_json(document[field], str(path), field)
    except (ValueError, KeyError, TypeError) as error:
        raise AsicperfError(f"--resume: {path}: not a bench {field} file ({error})") from None
    except ResultError as error:
        raise AsicperfError(f"--resume: {error}") from None
    difference = key.difference(stored)
    if difference is not None:
        raise AsicperfError(
            f"--resume: {path} is from another run ({difference}); "
            "use another --out or drop --resume"
        )
    return record
