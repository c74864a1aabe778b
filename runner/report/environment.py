"""Where a result was measured: enough about the machine, the software and the invocation for
someone else to reproduce it, or to see why their figure differs."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from runner.results.document import Environment, GitRevision, Host, ThreadSettings
from targets.hardware.host import detect_cpu

PACKAGES = (
    "asicperf",
    "numpy",
    "onnx",
    "onnx-ir",
    "onnxruntime",
    "apache-tvm",
    "numba",
    "rich",
    "mlcommons-loadgen",
)
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "TVM_NUM_THREADS",
)
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_PROBE_TIMEOUT_S = 10


def environment(command: list[str], seed: int) -> Environment:
    """The `environment` section of a result document, collected now; `command` is the
    invocation as typed."""
    cpu = detect_cpu()
    return Environment(
        host=Host(
            cpu=cpu.model,
            cores=cpu.cores,
            threads=cpu.threads,
            flags=tuple(cpu.flags),
            memory_gib=cpu.memory_gib,
        ),
        gpus=tuple(gpus()),
        os=platform.platform(),
        python=platform.python_version(),
        packages={name: _version(name) for name in PACKAGES},
        git=git_revision(_PROJECT_ROOT),
        command=tuple(command),
        seed=seed,
        threads=ThreadSettings(
            cpu_count=os.cpu_count(),
            env={name: os.environ.get(name) for name in THREAD_VARIABLES},
        ),
    )


def gpus() -> list[str]:
    """NVIDIA GPUs as `name, driver` lines; none when nvidia-smi is absent or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"]
    output = _run(query)
    return [line.strip() for line in output.splitlines() if line.strip()] if output else []


def git_revision(root: Path) -> GitRevision | None:
    """The project's commit and whether the tree had local changes; None outside a checkout
    (an installed wheel)."""
    if not (root / ".git").exists():
        return None
    revision = _run(["git", "-C", str(root), "rev-parse", "HEAD"])
    if revision is None:
        return None
    status = _run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
    return GitRevision(revision=revision.strip(), dirty=bool(status and status.strip()))


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
