"""Where LoadGen writes its logs, and the settings that send them there.

The summary and detail logs and the accuracy log are kept (the result references them). The
trace is turned off: it grows by about a kilobyte per query, hundreds of megabytes on a long
run of a small model, and nothing here reads it; LoadGen still leaves an empty file.
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


def log_settings(files: LoadgenLogFiles) -> lg.LogSettings:
    """LoadGen's log settings for `files` (the folder must exist): nothing on stdout, which
    belongs to asicperf's own output, and no trace."""
    settings = lg.LogSettings()
    settings.log_output.outdir = str(files.folder)
    settings.log_output.copy_summary_to_stdout = False
    settings.enable_trace = False
    return settings
