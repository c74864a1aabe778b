"""`runner` starts without onnx, numpy or TVM: importing the CLI, `--help`, `targets list` and
`zoo list` load none of them (the figure: docs/benchmarks/cli-startup.md). Each check runs in a
fresh interpreter, since this one has them all loaded already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("onnx", "numpy", "onnx_ir", "tvm", "onnxruntime")


def _heavy_loaded(code: str, cache: Path) -> list[str]:
    """The HEAVY modules in sys.modules after `code` runs in a new interpreter."""
    report = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)"
    script = f"import json, sys\n{code}\n{report}"
    env = {**os.environ, "ASICPERF_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stderr.strip().splitlines()[-1])


def _runner(*argv: str) -> str:
    """`runner ARGV` through the CLI's entry point, as the installed script calls it."""
    return f"from runner.cli import main; main({list(argv)!r})"


def test_importing_the_cli_loads_none_of_them(tmp_path: Path) -> None:
    assert _heavy_loaded("import runner.cli", tmp_path) == []


def test_help_loads_none_of_them(tmp_path: Path) -> None:
    code = f"import contextlib\nwith contextlib.suppress(SystemExit):\n    {_runner('--help')}"
    assert _heavy_loaded(code, tmp_path) == []


def test_targets_list_loads_none_of_them(tmp_path: Path) -> None:
    assert _heavy_loaded(_runner("targets", "list", "--json"), tmp_path) == []


def test_zoo_list_reads_the_catalog_and_cache_only(tmp_path: Path) -> None:
    """The first listing measures the onnx wheel's light models once (loading them); from then
    on the stats come from the cache."""
    assert "onnx" in _heavy_loaded(_runner("zoo", "list", "--json"), tmp_path)
    assert _heavy_loaded(_runner("zoo", "list", "--json"), tmp_path) == []


def test_a_group_that_needs_onnx_loads_it(tmp_path: Path) -> None:
    """The checks above can fail: registering `runner ir` imports its handlers' onnx."""
    code = "from runner.cli import build_parser\nbuild_parser(loaded={'ir'})"
    assert "onnx" in _heavy_loaded(code, tmp_path)
