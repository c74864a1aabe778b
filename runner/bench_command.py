"""`runner bench --level model --model M`: throughput and latency per batch size under an MLPerf
LoadGen scenario, with the verdict, the best batch size and drift against the reference.
`--level op` is runner/op_bench_command.py."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ir.bindings import check_dim_size
from ir.errors import AsicperfError
from ir.files import check_output_dir
from passes.pipeline import PipelineError, parse_pipeline, split_options
from runner import op_bench_command
from runner.bench.engine import BenchPlan, bench
from runner.bench.scenarios import SCENARIOS
from runner.console import console
from runner.report.show import batch_summary
from runner.results.model import BatchResult, ModelResult
from zoo.resolve import resolve_model
from zoo.workload import check_field, default_workload, workload_for

DEFAULT_RESULTS = "bench-results"  # under the current directory, when --out is not given
_MODEL_OPTIONS = (
    "model",
    "workload",
    "target",
    "pipeline",
    "batch",
    "scenario",
    "min_duration",
    "min_queries",
    "latency_bound",
    "server_qps",
)
_OP_OPTIONS = ("provider", "op", "dtype", "shape", "suite")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--level", choices=("model", "op"), default="model")
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
    parser.add_argument("--seed", type=int, default=0, help="seed of inputs and arrivals")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="default bench-results/<model>-<target>-<pipeline>-<scenario>",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep completed batch files (refused if any setting differs)",
    )
    parser.add_argument("--json", action="store_true", help="print the result document")
    op_bench_command.register_options(parser)
    parser.set_defaults(handler=run_bench)


# Workload fields set by a numeric option, checked as the workload file's fields are.
_NUMERIC_OPTIONS = {
    "min_duration_s": ("min_duration", "--min-duration"),
    "min_queries": ("min_queries", "--min-queries"),
    "latency_bound_ms": ("latency_bound", "--latency-bound"),
    "server_qps": ("server_qps", "--server-qps"),
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
    """The workload fields the user set on the command line, each value checked."""
    given: dict[str, Any] = {
        "model": args.model,
        "pipeline": args.pipeline,
        "scenario": args.scenario,
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


def _refuse_other_level(args: argparse.Namespace) -> None:
    """An option of the other level is a mistake to name, not to ignore."""
    other = _OP_OPTIONS if args.level == "model" else _MODEL_OPTIONS
    given = [name for name in other if getattr(args, name) is not None]
    flags = {"model": ("flush_cache",), "op": ("resume",)}[args.level]
    given += [name for name in flags if getattr(args, name)]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise AsicperfError(f"{options}: not an option of --level {args.level}")


def _plan(args: argparse.Namespace) -> BenchPlan:
    if not (args.model or args.workload):
        raise AsicperfError("--level model needs --model or --workload")
    if args.seed < 0:
        raise AsicperfError(f"--seed {args.seed}: must be 0 or more")
    overrides = _overrides(args)
    if args.pipeline:
        parse_pipeline(args.pipeline)  # a bad spec fails before the model is loaded
    base = workload_for(args.workload) if args.workload else default_workload(args.model)
    workload = dataclasses.replace(base, **overrides)
    return BenchPlan(workload, resolve_model(workload.model), args.seed, tuple(args.command_line))


def _out_folder(args: argparse.Namespace, plan: BenchPlan) -> Path:
    """`--out`, else a folder named after what changes the figures (model, target with its
    options, pipeline, scenario), so two different runs never replace each other's files."""
    if args.out:
        return check_output_dir(args.out, "--out")
    workload = plan.workload
    model = Path(workload.model).stem  # the zoo name, or the file name without .onnx
    parts = (model, plan.target_spec, workload.pipeline or "none", workload.scenario)
    name = "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("_") for part in parts)
    return check_output_dir(Path(DEFAULT_RESULTS) / name, "results folder (--out)")


class _Bars:
    """Progress bars on stderr, one per batch size: compiling, then timing."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[int, TaskID] = {}
        self._last = 0.0

    def _due(self) -> bool:
        """At most ten redraws a second, so drawing stays out of the timed loop's way."""
        now = time.monotonic()
        if now - self._last < 0.1:
            return False
        self._last = now
        return True

    def compiling(self, batch_size: int) -> None:
        self._tasks[batch_size] = self._progress.add_task(f"batch {batch_size}: compile", total=1)

    def timing(self, batch_size: int, fraction: float) -> None:
        if not self._due():
            return
        self._progress.update(
            self._tasks[batch_size],
            description=f"batch {batch_size}: timing",
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
    plan = _plan(args)
    folder = _out_folder(args, plan)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=args.json) as progress:
        result = bench(plan, folder, args.resume, _Bars(progress))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print(result, folder)
    return 0


def _print(result: ModelResult, folder: Path) -> None:
    out = console()
    for renderable in batch_summary(result):
        out.print(renderable)
    out.print(f"results: {folder}", markup=False)
