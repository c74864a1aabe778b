"""Result files: read (older versions upgraded, every field checked) and written atomically, so
a report never draws from a file it misunderstands and a crash never leaves half a document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ir.files import write_text_atomically
from runner.results.llm import LlmResult
from runner.results.model import ModelResult
from runner.results.op import OpResult
from runner.results.profile import ProfileResult
from runner.results.record import ResultError
from runner.results.upgrade import upgrade

RESULT_FILE = "result.json"  # a result folder's document; batch files sit beside it
Result = ModelResult | OpResult | LlmResult | ProfileResult
_BY_KIND: dict[str, type[Result]] = {
    kind.KIND: kind for kind in (ModelResult, OpResult, LlmResult, ProfileResult)
}
RESULT_KINDS = tuple(_BY_KIND)  # "model", "op", "llm", "profile"


def result_from_json(document: Any, where: str) -> Result:
    """The record of a document of any version; a one-line ResultError naming `where` and the
    field otherwise."""
    if not isinstance(document, dict):
        raise ResultError(f"{where}: not a result document (a JSON object)")
    document = upgrade(document, where)
    kind = document.get("kind")
    if kind not in _BY_KIND:
        raise ResultError(f"{where}: kind {kind!r} is not one of {', '.join(_BY_KIND)}")
    return _BY_KIND[kind].from_json(document, where)


def read_result(path: str | Path) -> Result:
    """The result at `path` (a result.json or its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultError(f"{path}: no such result file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultError(f"{path}: not a JSON result ({error})") from None
    return result_from_json(document, str(path))


def write_result(path: str | Path, result: Result) -> Path:
    """Atomically: a crash leaves the previous file (or none), never half a document. What is
    written is read back first, so a document that would not read is never written."""
    document = result.to_json()
    type(result).from_json(document, str(path))
    return write_text_atomically(path, json.dumps(document, indent=2) + "\n")
