"""The HTML report in a real browser (headless Chromium): every chart survives parsing with its
marks, the page logs nothing to the console, and a screenshot is kept as a test artifact."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_documents import (
    audited_pass,
    drift_output,
    legacy_model_document,
    model_document,
    op_case,
    op_document,
    read,
)

from runner.report.html import render_html

ARTIFACTS_ENV = "ASICPERF_TEST_ARTIFACTS"
REPO_ROOT = Path(__file__).resolve().parents[1]
BROWSER_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 600
DATA_MARK = re.compile(r"<(circle|rect|polygon|g)\b[^>]*><title>")  # a point, box or bar


def _apt(*args: str) -> bool:
    command = ["apt-get", *args]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=INSTALL_TIMEOUT_S, env=environment, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and we are root."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and apt-get cannot install it (not root)")
    install = ("install", "-y", "-q", "chromium")
    if not _apt(*install) and not (_apt("update", "-q") and _apt(*install)):
        pytest.skip("apt-get could not install chromium")
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium is still not on PATH after installing it")
    return found


def _browse(chromium: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=1",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=True
    )


def _console_messages(stderr: str) -> list[str]:
    """What the page logged: Chromium writes console output (errors and uncaught exceptions
    included) as `:CONSOLE` lines; a page without script logs none."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two models (one audited int8), an old result and an op suite with a zero-FLOP case."""
    moved = drift_output([0] * 9 + [2, 8, 0, 0], cosine=0.99, max_abs=0.5)
    audit = {
        "fingerprint": "sha256:00",
        "passes": [audited_pass(1, "dce"), audited_pass(2, "quantize-int8", (4, 9), [moved])],
    }
    documents = [
        model_document("tiny", "onnxruntime", None, {1: 100.0, 8: 400.0, 32: 900.0}),
        model_document("tiny", "onnxruntime", "int8", audit=audit, outputs=[moved]),
        legacy_model_document("old"),
        op_document(
            [
                op_case("gemm", "numpy", 2000, 100, 50.0),
                op_case("softmax", "tvm", 100, 200, 2.0),
                op_case("memcpy", "numpy", 0, 1000, 5.0),
            ]
        ),
    ]
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html([(f"r{i}", read(d)) for i, d in enumerate(documents)], {}), "utf-8")
    return path


def test_every_chart_renders_with_marks(chromium, report, tmp_path) -> None:
    dom = _browse(chromium, report, tmp_path / "profile", "--dump-dom").stdout
    charts = re.findall(r'<svg class="chart".*?</svg>', dom, re.S)
    datasheets = len(re.findall(r'<svg class="chart"[^>]*aria-label="Datasheet:', dom))
    # throughput 2 (two models), latency 3 + 1, drift 2, roofline 1, then the datasheets
    assert datasheets >= 2
    assert len(charts) == 9 + datasheets
    assert all(DATA_MARK.search(chart) for chart in charts)


def test_page_logs_nothing_to_the_console(chromium, report, tmp_path) -> None:
    done = _browse(chromium, report, tmp_path / "profile", "--dump-dom")
    assert _console_messages(done.stderr) == []


def test_console_check_catches_a_script_error(chromium, tmp_path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>undefinedFunction();</script></body></html>", "utf-8")
    done = _browse(chromium, broken, tmp_path / "profile", "--dump-dom")
    (message,) = _console_messages(done.stderr)
    assert "Uncaught ReferenceError: undefinedFunction is not defined" in message


def test_screenshot_is_kept_as_an_artifact(chromium, report, tmp_path) -> None:
    folder = Path(os.environ.get(ARTIFACTS_ENV) or REPO_ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    screenshot = folder / "report.png"
    screenshot.unlink(missing_ok=True)
    _browse(
        chromium,
        report,
        tmp_path / "profile",
        f"--screenshot={screenshot}",
        "--window-size=1400,4000",
        "--hide-scrollbars",
    )
    assert screenshot.stat().st_size > 10_000
