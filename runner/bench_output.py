"""What every `runner bench` level does with its output: the results folder (`--out`, else one
named after what changes the figures), progress bars on stderr, and the result printed as
tables or as its JSON document."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ir.files import check_output_dir
from runner.console import console
from runner.results.record import Record

DEFAULT_RESULTS = "bench-results"  # under the current directory, when --out is not given


def file_name_part(text: str) -> str:
    """`text` in file-name characters: `tvm{winograd=false}` -> `tvm_winograd_false`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def results_folder(out: str | None, parts: Sequence[str]) -> Path:
    """`out`, else `bench-results/<parts joined by ->`, each part cleaned to file-name
    characters, so two runs that differ in a part never replace each other's files."""
    if out:
        return check_output_dir(out, "--out")
    name = "-".join(file_name_part(part) for part in parts)
    return check_output_dir(Path(DEFAULT_RESULTS) / name, "results folder (--out)")


def progress_bars(*, quiet: bool, count: bool = False) -> Progress:
    """Bars on stderr (stdout is the result's); `quiet` (JSON output) clears them when done,
    `count` adds "done/total"."""
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
    if count:
        columns.append(MofNCompleteColumn())
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=Console(file=sys.stderr), transient=quiet)


def print_result(
    result: Record, renderables: Sequence[RenderableType], folder: Path, *, as_json: bool
) -> None:
    """The result document as JSON, or its tables and where its files are."""
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return
    out = console()
    for renderable in renderables:
        out.print(renderable)
    out.print(f"results: {folder}", markup=False)
