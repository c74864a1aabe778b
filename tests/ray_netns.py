"""Running a test's Ray part in a network namespace of its own.

Ray binds to the machine's outward address whatever it is told, and a test's cluster must stay
on loopback (and out of other tests' way): so the part that starts Ray runs in a child process
under `unshare -n`, whose only interface is its own `lo`. The child imports the function's
module, calls it with the given keyword arguments, and prints its JSON-able return value as its
last line of output; the test gets that value back.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
_MARK = "ray-netns-result:"
_CHILD = f"""
import importlib, json, sys
module, name, arguments = sys.argv[1:4]
result = getattr(importlib.import_module(module), name)(**json.loads(arguments))
print({_MARK!r} + json.dumps(result), flush=True)
"""


@functools.cache
def why_not_runnable() -> str | None:
    """Why Ray tests cannot run here (no Ray, or no permission to make a namespace), or None."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install 'asicperf[sweep]')"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs `unshare` and `ip` to give Ray a loopback-only network namespace"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return "`unshare -n` is not permitted here (needs root or user namespaces)"
    return None


def run_in_netns(function: Callable[..., Any], timeout_s: float = 240, **arguments: Any) -> Any:
    """`function(**arguments)` in a child process in a fresh network namespace, and its return
    value; the test is skipped where that cannot run, and fails with the child's output if the
    child fails."""
    reason = why_not_runnable()
    if reason is not None:
        pytest.skip(reason)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    child = [sys.executable, "-c", _CHILD, function.__module__, function.__name__]
    child.append(json.dumps(arguments))
    command = 'ip link set lo up && exec "$@"'
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", command, "bash", *child],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
        env=env,
        check=False,
    )
    results = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or not results:
        output = (done.stdout + done.stderr)[-6000:]
        pytest.fail(f"the Ray part exited with status {done.returncode}:\n{output}")
    return json.loads(results[-1].removeprefix(_MARK))
