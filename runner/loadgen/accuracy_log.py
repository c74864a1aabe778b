"""mlperf_log_accuracy.json read back into each sample's outputs.

LoadGen writes one entry per response it logged: `{"seq_id", "qsl_idx", "data"}`, `data`
being the response bytes in hex (an accuracy run logs every response; a performance run none).
`qsl_idx` is the QSL sample index, which is the index of the input batch (sut.py), and the
bytes are a batch's outputs in the layout of responses.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ir.errors import AsicperfError
from runner.loadgen.responses import ArraySpec, outputs_from_bytes


def read_accuracy_log(path: Path, layout: Sequence[ArraySpec]) -> dict[int, list[np.ndarray]]:
    """Batch index -> that batch's outputs (read-only arrays of `layout`). A batch logged twice
    (MultiStream pads its last accuracy query with samples already issued) keeps its first."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise AsicperfError(f"{path}: cannot read LoadGen's accuracy log: {error}") from error
    except json.JSONDecodeError as error:
        raise AsicperfError(f"{path}: not JSON: {error}") from error
    if not isinstance(entries, list):
        raise AsicperfError(f"{path}: expected a JSON list of LoadGen responses")
    outputs: dict[int, list[np.ndarray]] = {}
    for number, entry in enumerate(entries):
        where = f"{path}: entry {number}"
        index, data = _index_and_bytes(entry, where)
        if index not in outputs:
            outputs[index] = outputs_from_bytes(data, layout, f"{where} (batch {index})")
    return outputs


def _index_and_bytes(entry: object, where: str) -> tuple[int, bytes]:
    if not isinstance(entry, dict):
        raise AsicperfError(f"{where}: expected an object with 'qsl_idx' and 'data'")
    index, data = entry.get("qsl_idx"), entry.get("data")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise AsicperfError(f"{where}: 'qsl_idx' is {index!r}, not a sample index")
    if not isinstance(data, str):
        raise AsicperfError(f"{where}: 'data' is {data!r}, not a hex string")
    try:
        return index, bytes.fromhex(data)
    except ValueError as error:
        raise AsicperfError(f"{where}: 'data' is not hex: {error}") from error
