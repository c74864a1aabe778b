"""`runner profile MODEL --target T`: where the time goes, layer by layer in the IR's node ids.

The model is loaded with the batch bound, the pipeline applied (bound to the target) and the
model compiled with fallback, as `runner bench` does. Each piece of the executable is then
profiled: the target's pieces through its profiling hook (targets/profiling.py), pieces that
fell back to the reference path timed whole, as one layer each. Every layer is placed under
the roofline of the target's hardware (runner/report/profile_figures.py) and the result
written as a `profile` document.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np

from ir.bindings import symbolic_dims
from ir.errors import AsicperfError, first_line
from ir.fingerprint import fingerprint
from ir.memory import check_fits_in_memory
from ir.model_io import load_model
from ir.seeded_inputs import seeded_inputs
from microbench.roofline import host_roofline, spec_roofline
from passes.instruments import VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import PipelineError, make_config, parse_pipeline, split_options
from passes.target_binding import bind_pipeline
from runner.bench_output import print_result, results_folder
from runner.report.environment import environment
from runner.report.profile_figures import (
    PieceLayer,
    op_type_key,
    pass_key,
    profile_layers,
    rollup,
)
from runner.report.profile_terminal import DEFAULT_TOP, profile_renderables
from runner.results.files import RESULT_FILE, write_result
from runner.results.model import TargetInfoRecord
from runner.results.op import RooflineRecord
from runner.results.profile import ProfileResult
from runner.spinner import spinner
from targets.api import CompiledModel, Target
from targets.executable import Executable, compile_model
from targets.hardware.database import get as hardware_spec
from targets.hardware.host import host_profile
from targets.partition import Segment
from targets.profiling import LayerTiming, NotProfilable, ProfilingTarget, profiler_of
from targets.registry import get_target
from zoo.resolve import resolve_model

BATCH_DIM = "batch"
SEED = 0  # of the seeded inputs every run profiles
DEFAULT_RUNS = 10
FALLBACK_KIND = "reference fallback"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="path to an .onnx file or a zoo name")
    parser.add_argument(
        "--target", required=True, metavar="T", help='target, with options: "tvm{opt_level=3}"'
    )
    parser.add_argument("--pipeline", metavar="P", help="passes to apply first")
    parser.add_argument("--batch", type=int, default=1, metavar="N", help="batch size (default 1)")
    parser.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, metavar="R", help="profiled runs, after a warm-up"
    )
    parser.add_argument(
        "--top", type=int, default=DEFAULT_TOP, metavar="K", help="layers shown (default 10)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="result folder (default: bench-results/profile-...)"
    )
    parser.add_argument("--json", action="store_true", help="print the profile document")
    parser.set_defaults(handler=profile_model)


def profile_model(args: argparse.Namespace) -> int:
    for option, value in (("--runs", args.runs), ("--top", args.top), ("--batch", args.batch)):
        if value < 1:
            raise AsicperfError(f"{option}: {value} is out of range (expected 1 or more)")
    model_path = resolve_model(args.model)
    try:
        name, options = split_options(args.target, args.target)
    except PipelineError as error:
        raise AsicperfError(f"target '{args.target}': {error}") from None
    target = get_target(name)
    config = make_config(type(target), options, kind="target")
    hook = profiler_of(target)
    if hook is None:
        raise AsicperfError(f"target '{name}' has no per-layer profiler (no per-layer profile)")
    pipeline = bind_pipeline(args.pipeline or "", name)
    parts = ["profile", args.model, args.target, args.pipeline or "none", f"b{args.batch}"]
    folder = results_folder(args.out, parts)
    unbound = load_model(model_path)
    if args.batch != 1 and BATCH_DIM not in symbolic_dims(unbound):
        raise AsicperfError(
            f"{args.model}: no input has a '{BATCH_DIM}' dimension, so only batch 1 applies"
        )
    what = f"{args.model} at batch {args.batch}"
    check_fits_in_memory(unbound, what, bindings={BATCH_DIM: args.batch})
    info = target.info()
    roofline = _roofline(info.hardware)
    with spinner(f"profiling {args.model} on {args.target}", enabled=not args.json):
        model = load_model(model_path, bindings={BATCH_DIM: args.batch})
        feeds = seeded_inputs(model, SEED, {BATCH_DIM: args.batch}, int_high=2)
        if pipeline:
            run_pipeline(model, parse_pipeline(pipeline), [VerifyAfterEachPass()])
        executable = compile_model(target, model, hook.profiling_config(config))
        layers, end_to_end, profilers = _profile_pieces(executable, hook, args, feeds)
        compiled_model = target.prepare(model)
    records = profile_layers(layers, compiled_model, roofline)
    total = sum(layer.time_ms for layer in records)
    median = statistics.median(end_to_end)
    result = ProfileResult(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        environment=environment(args.command_line, SEED),
        model=args.model,
        ir_fingerprint=fingerprint(unbound),
        target=args.target,
        target_info=TargetInfoRecord(
            name=info.name, version=info.version, device=info.device, hardware=info.hardware
        ),
        pipeline=args.pipeline or None,
        resolved_pipeline=pipeline or None,
        batch_size=args.batch,
        runs=args.runs,
        profilers=profilers,
        roofline=roofline,
        layers=records,
        by_op_type=rollup(records, op_type_key),
        by_pass=rollup(records, pass_key),
        total_ms=total,
        end_to_end_ms=median,
        end_to_end_runs_ms=end_to_end,
        overhead_ms=median - total,
        unmapped_ms=sum(layer.time_ms for layer in records if not layer.nodes),
    )
    write_result(folder / RESULT_FILE, result)
    print_result(result, profile_renderables(result, args.top), folder, as_json=args.json)
    return 0


def _roofline(hardware: str | None) -> RooflineRecord:
    """The ceilings of the hardware the target runs on: the host's (measured once, then cached)
    or a database product's datasheet."""
    roofline = (
        host_roofline(host_profile())
        if hardware in (None, "host")
        else spec_roofline(hardware_spec(str(hardware)))
    )
    return RooflineRecord.from_json(roofline.to_json(), "roofline")


def _profile_pieces(
    executable: Executable,
    hook: ProfilingTarget,
    args: argparse.Namespace,
    feeds: Mapping[str, np.ndarray],
) -> tuple[list[PieceLayer], tuple[float, ...], tuple[str, ...]]:
    """Every piece's layers, each run's end-to-end time (the pieces' sum) and each piece's
    profiler. Values pass between pieces by name, as the segmented session passes them."""
    values: dict[str, np.ndarray] = {**executable.defaults, **feeds}
    layers: list[PieceLayer] = []
    per_run = [0.0] * args.runs
    profilers = []
    segments = executable.plan.segments
    chained = len(segments) > 1  # later pieces need this one's outputs
    for segment, (target, compiled) in zip(segments, executable.pieces, strict=True):
        piece_feeds = {name: values[name] for name in segment.inputs}
        if target is executable.target:
            try:
                profile = hook.profile(compiled, args.batch, piece_feeds, args.runs)
            except NotProfilable as error:
                raise AsicperfError(f"target '{target.name}': {first_line(error)}") from None
            timings, piece_runs = list(profile.layers), profile.end_to_end_ms
            profilers.append(profile.source)
            outputs = target.load(compiled, args.batch).run(piece_feeds) if chained else []
        else:
            timing, outputs = _timed_whole(target, compiled, segment, args, piece_feeds)
            timings, piece_runs = [timing], timing.times_ms
            profilers.append(FALLBACK_KIND)
        _check_runs(target.name, timings, piece_runs, args.runs)
        layers += [PieceLayer(segment.index, timing) for timing in timings]
        per_run = [total + ms for total, ms in zip(per_run, piece_runs, strict=True)]
        if chained:
            values.update(zip(segment.outputs, outputs, strict=True))
    return layers, tuple(per_run), tuple(profilers)


def _timed_whole(
    target: Target,
    compiled: CompiledModel,
    segment: Segment,
    args: argparse.Namespace,
    feeds: Mapping[str, np.ndarray],
) -> tuple[LayerTiming, list[np.ndarray]]:
    """A reference-fallback piece as one layer: a warm-up run (whose outputs feed the next
    piece), then `runs` timed runs."""
    session = target.load(compiled, args.batch)
    outputs = session.run(feeds)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        session.run(feeds)
        times.append((time.perf_counter() - start) * 1e3)
    name = f"segment {segment.index}"
    return LayerTiming(name, FALLBACK_KIND, segment.nodes, tuple(times)), outputs


def _check_runs(
    name: str, timings: list[LayerTiming], end_to_end: tuple[float, ...], runs: int
) -> None:
    """A profiler must report every run it was asked for; a short one would skew the medians."""
    counts = {len(timing.times_ms) for timing in timings} | {len(end_to_end)}
    if counts != {runs}:
        raise AsicperfError(
            f"target '{name}': its profiler reported {sorted(counts)} runs, not the {runs} asked"
        )
