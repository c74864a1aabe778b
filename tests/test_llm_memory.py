"""Peak resident memory over a block: the reset makes it the block's own (a 64 MiB array shows
in the block that held it, not in a later one), and where the reset or /proc is missing the
figure is None, not the process's lifetime peak."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runner.llm_bench import memory
from runner.llm_bench.memory import PeakRss, peak_rss_bytes, reset_peak_rss

MIB = 1 << 20


@pytest.mark.skipif(not reset_peak_rss(), reason="this OS cannot reset a process's peak RSS")
def test_the_peak_is_the_blocks_own() -> None:
    with PeakRss() as busy:
        start = peak_rss_bytes()  # just reset: the resident size the block starts from
        array = np.empty(64 * MIB, dtype=np.uint8)
        array.fill(1)  # touched: resident, not just reserved
    del array
    with PeakRss() as after:
        pass
    assert start is not None and busy.bytes is not None and after.bytes is not None
    # at least the array, less a little: the kernel may drop other (file-backed) resident
    # pages meanwhile, as it did by 36 KiB in a full test run
    assert busy.bytes >= start + 60 * MIB
    assert after.bytes < busy.bytes - 32 * MIB  # the array's pages went back to the OS


def test_the_peak_is_read_from_vmhwm_in_kib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = tmp_path / "status"
    status.write_text(
        "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t   13604 kB\nVmRSS:\t 2072 kB\n"
    )
    monkeypatch.setattr(memory, "STATUS", status)
    assert peak_rss_bytes() == 13604 * 1024
    monkeypatch.setattr(memory, "STATUS", tmp_path / "absent")
    assert peak_rss_bytes() is None


def test_without_a_reset_there_is_no_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "no-proc" / "clear_refs")
    assert not reset_peak_rss()
    with PeakRss() as peak:
        pass
    assert peak.bytes is None
