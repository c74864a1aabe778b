"""Where LoadGen writes its logs, and the settings that send them there.

The summary and detail logs and the accuracy log are kept (the result references them). The
trace (per-sample events) is on for token-latency performance runs only, which read each
sample's first-token and completion times from it (sample_trace.py): an LLM run has few, long
samples, so it stays small. Elsewhere it is off: it grows by about a kilobyte per query,
hundreds of megabytes on a long run of a small model, and nothing reads it; LoadGen still
leaves an empty file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlperf_loadgen as lg


@dataclass(frozen=True)
class LoadgenLogFiles:
    """The logs of one LoadGen run, in `folder`."""

    folder: Path

    @property
    def summary(self) -> Path:
        return self.folder / "mlperf_log_summary.txt"

    @property
    def detail(self) -> Path:
        return self.folder / "mlperf_log_detail.txt"

    @property
    def accuracy(self) -> Path:
        return self.folder / "mlperf_log_accuracy.json"

    @property
    def trace(self) -> Path:
        return self.folder / "mlperf_log_trace.json"


def log_settings(files: LoadgenLogFiles, *, trace: bool) -> lg.LogSettings:
    """LoadGen's log settings for `files` (the folder must exist): nothing on stdout, which
    belongs to asicperf's own output, and the trace only with `trace`."""
    settings = lg.LogSettings()
    settings.log_output.outdir = str(files.folder)
    settings.log_output.copy_summary_to_stdout = False
    settings.enable_trace = trace
    return settings
