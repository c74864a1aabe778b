"""README's two install commands, in order, with a numba op bench between them, in a fresh
virtual environment: a numba cache written into site-packages used to survive `pip install .`'s
uninstall and shadow the editable install (`No module named 'microbench.providers.base'`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
_NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".venv",
    "bench-results",
    "test-artifacts",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
)


def _run(args: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_numba_op_bench_between_install_steps_leaves_runner_working(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(_REPO, repo, ignore=_NOT_SOURCES)
    venv = tmp_path / "venv"
    # The dependencies come from the system site: nothing to download but the build backend.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "ASICPERF_CACHE": str(tmp_path / "cache"),
    }
    pip = [bin_dir / "python", "-m", "pip", "install", "--quiet"]

    _run([*pip, "."], repo, env)  # README step 1
    op_bench = ["bench", "--level", "op", "--provider", "numba", "--op", "rms_norm"]
    op_bench += ["--shape", "2x8", "--max-time", "0.05", "--min-time", "0.01"]
    _run([bin_dir / "runner", *op_bench, "--out", tmp_path / "op"], repo, env)
    site_packages = next(venv.glob("lib/python*/site-packages"))
    assert not list(site_packages.rglob("*.nbi"))
    assert list((tmp_path / "cache" / "numba").rglob("*.nbi"))
    _run([*pip, "-e", ".[test]"], repo, env)  # README step 2

    _run([bin_dir / "runner", "--help"], repo, env)
