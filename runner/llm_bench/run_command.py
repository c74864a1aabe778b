"""The body of `runner bench --level llm` (runner/llm_bench_command.py): the workload with the
command line's overrides, the plan checked before any work, progress bars while the engine
runs, and the result printed or written as JSON."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.progress import Progress, TaskID

from ir.errors import AsicperfError
from ir.files import check_output_dir
from runner.bench_options import check_shared_options
from runner.bench_output import print_result, progress_bars, results_folder
from runner.llm_bench.anchor import llama_cpp_available
from runner.llm_bench.engine import LlmPlan, bench_llm
from runner.llm_bench.model_source import llm_model
from runner.report.llm_sections import llm_renderables
from runner.results.llm import LlmRun
from zoo.llm_workload import (
    LlmWorkload,
    default_llm_workload,
    llm_overrides,
    llm_workload_for,
)

# The command-line options that override an LLM workload's fields (zoo.llm_workload).
_OVERRIDES = (
    "model",
    "pipeline",
    "target",
    "batch",
    "prompt_len",
    "gen_len",
    "rate",
    "ttft_bound",
    "tpot_bound",
    "min_duration",
    "min_queries",
    "latency_percentile",
)


def _workload(args: argparse.Namespace) -> LlmWorkload:
    """The workload with the command line's overrides, every value checked."""
    check_shared_options(args)
    base = llm_workload_for(args.workload) if args.workload else default_llm_workload(args.model)
    if args.scenario is not None:
        base = base.in_scenario(args.scenario)
    given = {name: getattr(args, name) for name in _OVERRIDES}
    return llm_overrides(base, {name: value for name, value in given.items() if value is not None})


def _out_folder(args: argparse.Namespace, workload: LlmWorkload) -> Path:
    """`--out`, else a folder named after what changes the figures, "llm-" first."""
    model = Path(workload.model).stem
    parts = ("llm", model, workload.target_spec, workload.pipeline or "none", workload.scenario)
    return results_folder(args.out, parts)


class _Bars:
    """One progress bar per run, on stderr, at most ten redraws a second."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[tuple[int, int], TaskID] = {}
        self._last = 0.0
        self._compile: TaskID | None = None
        self._scoring: TaskID | None = None

    def compiling(self) -> None:
        self._compile = self._progress.add_task("compile", total=None)

    def timing(self, batch_size: int, prompt_len: int, fraction: float) -> None:
        self._done_compiling()
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        run = (batch_size, prompt_len)
        if run not in self._tasks:
            description = f"batch {batch_size}, prompt {prompt_len}: timing under LoadGen"
            self._tasks[run] = self._progress.add_task(description, total=1)
        self._progress.update(self._tasks[run], completed=min(fraction, 1.0))

    def finished(self, run: LlmRun, resumed: bool) -> None:
        self._done_compiling()
        key = (run.batch_size, run.prompt_len)
        verdict = "VALID" if run.valid else "INVALID"
        text = (
            f"batch {run.batch_size}, prompt {run.prompt_len}: "
            f"{run.decode_tokens_per_s:.1f} decode tokens/s, {verdict}"
            + (" (resumed)" if resumed else "")
        )
        if key in self._tasks:
            self._progress.update(self._tasks[key], description=text, completed=1)
        else:
            self._progress.add_task(text, total=1, completed=1)

    def scoring(self) -> None:
        self._scoring = self._progress.add_task("accuracy: perplexity and drift", total=None)

    def anchoring(self) -> None:
        self._progress.add_task("anchor: llama.cpp pp and tg", total=None)

    def _done_compiling(self) -> None:
        if self._compile is not None:
            self._progress.update(self._compile, total=1, completed=1)
            self._compile = None


def run(args: argparse.Namespace) -> int:
    workload = _workload(args)
    folder = _out_folder(args, workload)
    loadgen_log = check_output_dir(args.loadgen_log, "--loadgen-log") if args.loadgen_log else None
    if args.anchor and (missing := llama_cpp_available()) is not None:
        raise AsicperfError(f"--anchor: {missing}")
    plan = LlmPlan(
        workload=workload,
        model=llm_model(workload.model, args.gguf),
        seed=args.seed,
        command=tuple(args.command_line),
        accuracy=not args.no_accuracy,
        anchor=args.anchor,
        loadgen_log=loadgen_log,
    )
    plan.settings(max(workload.batch_sizes))  # LoadGen's settings checked before any work
    with progress_bars(quiet=args.json) as progress:
        result = bench_llm(plan, folder, args.resume, _Bars(progress))
    print_result(result, llm_renderables(result, folder), folder, as_json=args.json)
    return 0
