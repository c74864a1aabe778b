"""`runner bench --level model --model M`: throughput and latency per batch size under an MLPerf
LoadGen scenario (run by LoadGen itself), with LoadGen's verdict, the best batch size and drift
against the reference. `--level op` is runner/op_bench_command.py, `--level llm`
runner/llm_bench_command.py."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from rich.progress import Progress, TaskID

from ir.bindings import check_dim_size
from ir.errors import AsicperfError
from ir.files import check_output_dir
from passes.pipeline import PipelineError, split_options
from runner import llm_bench_command, op_bench_command
from runner.bench.engine import BenchPlan, bench, loadgen_settings
from runner.bench_options import check_shared_options
from runner.bench_output import print_result, progress_bars, results_folder
from runner.llm_bench_command import LLM_FLAGS, LLM_OPTIONS
from runner.loadgen.settings import SCENARIOS
from runner.report.show import batch_summary
from runner.results.model import BatchResult
from zoo.resolve import resolve_model
from zoo.workload import Workload, check_field, default_workload, workload_for

# Options shared by the model and LLM levels, then each level's own.
_LOADGEN_OPTIONS = (
    "model",
    "workload",
    "target",
    "pipeline",
    "batch",
    "scenario",
    "min_duration",
    "min_queries",
    "latency_percentile",
    "loadgen_log",
)
_MODEL_ONLY = ("latency_bound", "server_qps", "samples_per_query")
_OP_OPTIONS = ("provider", "op", "dtype", "shape", "suite")
_OPTIONS_OF = {
    "model": _LOADGEN_OPTIONS + _MODEL_ONLY,
    "op": _OP_OPTIONS,
    "llm": _LOADGEN_OPTIONS + LLM_OPTIONS,
}
_FLAGS_OF = {"model": ("resume",), "op": ("flush_cache",), "llm": ("resume", *LLM_FLAGS)}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--level", choices=("model", "op", "llm"), default="model")
    parser.add_argument("--model", metavar="MODEL", help="path to an .onnx file or a zoo name")
    parser.add_argument(
        "--workload",
        metavar="FILE|NAME",
        help="what to run and how long; default: the model's shipped workload. Options below "
        "override its fields",
    )
    parser.add_argument(
        "--target", metavar="T", help='target, with options: "onnxruntime{threads=2}"'
    )
    parser.add_argument(
        "--pipeline", metavar="P", help='passes to apply before compiling ("" for none)'
    )
    parser.add_argument("--batch", metavar="1,8,32", help="batch sizes")
    parser.add_argument("--scenario", choices=SCENARIOS)
    parser.add_argument("--min-duration", type=float, metavar="S", help="seconds per batch size")
    parser.add_argument("--min-queries", type=int, metavar="N", help="queries per batch size")
    parser.add_argument("--latency-bound", type=float, metavar="MS", help="p99 bound in ms")
    parser.add_argument("--server-qps", type=float, metavar="QPS", help="arrivals, samples/s")
    parser.add_argument(
        "--latency-percentile",
        type=float,
        metavar="P",
        help="LoadGen's target latency percentile in (0, 1); default 0.9 single-stream, "
        "0.99 multi-stream and server",
    )
    parser.add_argument(
        "--samples-per-query",
        type=int,
        metavar="N",
        help="multi-stream: batches per query (LoadGen's default 8)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the inputs and of LoadGen's generators"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="default bench-results/<model>-<target>-<pipeline>-<scenario>",
    )
    parser.add_argument(
        "--loadgen-log",
        metavar="DIR",
        help="keep LoadGen's logs here instead of <out>/loadgen",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep completed batch files (refused if any setting differs)",
    )
    parser.add_argument("--json", action="store_true", help="print the result document")
    op_bench_command.register_options(parser)
    llm_bench_command.register_options(parser)
    parser.set_defaults(handler=run_bench)


# Workload fields set by a numeric option, checked as the workload file's fields are.
_NUMERIC_OPTIONS = {
    "min_duration_s": ("min_duration", "--min-duration"),
    "min_queries": ("min_queries", "--min-queries"),
    "latency_bound_ms": ("latency_bound", "--latency-bound"),
    "server_qps": ("server_qps", "--server-qps"),
    "latency_percentile": ("latency_percentile", "--latency-percentile"),
    "samples_per_query": ("samples_per_query", "--samples-per-query"),
}


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = sorted({int(item) for item in text.split(",")})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1:
        raise AsicperfError(f"--batch '{text}': expected positive batch sizes like 1,8,32")
    return tuple(check_dim_size(size, "--batch") for size in sizes)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The workload fields the user set on the command line, each value checked; the scenario
    is `Workload.in_scenario`'s to change."""
    given: dict[str, Any] = {
        "model": args.model,
        "pipeline": args.pipeline,
    }
    for field, (name, flag) in _NUMERIC_OPTIONS.items():
        value = getattr(args, name)
        given[field] = None if value is None else check_field(field, value, flag)
    if args.batch is not None:
        given["batch_sizes"] = _batch_sizes(args.batch)
    if args.target is not None:
        try:
            given["target"], given["target_options"] = split_options(args.target, args.target)
        except PipelineError as error:
            raise AsicperfError(f"target '{args.target}': {error}") from None
    return {field: value for field, value in given.items() if value is not None}


def _others(names_of: dict[str, tuple[str, ...]], level: str) -> list[str]:
    """The names other levels take and `level` does not, in the order they are declared."""
    own = set(names_of[level])
    return list(dict.fromkeys(n for names in names_of.values() for n in names if n not in own))


def _refuse_other_level(args: argparse.Namespace) -> None:
    """An option of another level is a mistake to name, not to ignore."""
    options = _others(_OPTIONS_OF, args.level)
    given = [name for name in options if getattr(args, name) is not None]
    given += [name for name in _others(_FLAGS_OF, args.level) if getattr(args, name)]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise AsicperfError(f"{options}: not an option of --level {args.level}")


def _workload(args: argparse.Namespace) -> Workload:
    """The workload with the command line's overrides, every value checked."""
    check_shared_options(args)
    overrides = _overrides(args)
    base = workload_for(args.workload) if args.workload else default_workload(args.model)
    if args.scenario is not None:
        base = base.in_scenario(args.scenario)
    return dataclasses.replace(base, **overrides)


def _plan(args: argparse.Namespace) -> tuple[BenchPlan, Path]:
    """What to measure and the results folder. Everything that can be wrong with the options
    (LoadGen's settings, --out, --loadgen-log) fails here, before the model is resolved (a zoo
    model may be built) or anything is written."""
    workload = _workload(args)
    settings = loadgen_settings(workload, args.seed)
    folder = _out_folder(args, workload)
    loadgen_log = None
    if args.loadgen_log:
        loadgen_log = check_output_dir(args.loadgen_log, "--loadgen-log")
    model_path = resolve_model(workload.model)
    plan = BenchPlan(workload, model_path, settings, tuple(args.command_line), loadgen_log)
    return plan, folder


def _out_folder(args: argparse.Namespace, workload: Workload) -> Path:
    """`--out`, else a folder named after what changes the figures (model, target with its
    options, pipeline, scenario), so two different runs never replace each other's files."""
    model = Path(workload.model).stem  # the zoo name, or the file name without .onnx
    parts = (model, workload.target_spec, workload.pipeline or "none", workload.scenario)
    return results_folder(args.out, parts)


class _Bars:
    """Progress bars on stderr, one per batch size: compiling, timing under LoadGen, then (the
    first batch size) LoadGen's accuracy run. Told on LoadGen's issue thread: rich's Progress
    takes its own lock."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[int, TaskID] = {}
        self._last = 0.0

    def _due(self) -> bool:
        """At most ten redraws a second, so drawing stays out of the served queries' way."""
        now = time.monotonic()
        if now - self._last < 0.1:
            return False
        self._last = now
        return True

    def compiling(self, batch_size: int) -> None:
        self._tasks[batch_size] = self._progress.add_task(f"batch {batch_size}: compile", total=1)

    def timing(self, batch_size: int, fraction: float) -> None:
        self._update(batch_size, "timing under LoadGen", fraction)

    def scoring(self, batch_size: int, fraction: float) -> None:
        self._update(batch_size, "accuracy under LoadGen", fraction)

    def _update(self, batch_size: int, doing: str, fraction: float) -> None:
        if not self._due():
            return
        self._progress.update(
            self._tasks[batch_size],
            description=f"batch {batch_size}: {doing}",
            completed=min(fraction, 1.0),
        )

    def finished(self, result: BatchResult) -> None:
        size = result.batch_size
        verdict = "VALID" if result.valid else "INVALID"
        text = f"batch {size}: {result.qps:.1f} samples/s, {verdict}"
        if size in self._tasks:
            self._progress.update(self._tasks[size], description=text, completed=1)
        else:
            self._progress.add_task(f"{text} (resumed)", total=1, completed=1)


def run_bench(args: argparse.Namespace) -> int:
    _refuse_other_level(args)
    if args.level == "op":
        return op_bench_command.run_op_bench(args)
    if args.level == "llm":
        return llm_bench_command.run_llm_bench(args)
    plan, folder = _plan(args)
    with progress_bars(quiet=args.json) as progress:
        result = bench(plan, folder, args.resume, _Bars(progress))
    print_result(result, batch_summary(result, folder), folder, as_json=args.json)
    return 0
