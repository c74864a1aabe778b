"""An LLM bench's finished runs, one file per (batch size, prompt length) beside the result,
so Ctrl-C keeps them and `--resume` continues (runner/bench/part_files.py)."""

from __future__ import annotations

from pathlib import Path

from runner.bench.part_files import read_part, write_part
from runner.bench.run_key import RunKey
from runner.results.llm import LlmRun

_FIELD = "run"


def run_path(folder: Path, batch_size: int, prompt_len: int) -> Path:
    return folder / f"run_b{batch_size}_p{prompt_len}.json"


def write_run(folder: Path, key: RunKey, run: LlmRun) -> Path:
    return write_part(run_path(folder, run.batch_size, run.prompt_len), key, _FIELD, run)


def load_run(folder: Path, key: RunKey, batch_size: int, prompt_len: int) -> LlmRun | None:
    """The run already in `folder` for this key (None when there is none)."""
    return read_part(run_path(folder, batch_size, prompt_len), key, _FIELD, LlmRun)
