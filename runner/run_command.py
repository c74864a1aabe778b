"""`runner run MODEL --target T`: one inference on a target (in its own process), outputs
written as .npy files, optionally compared with a second target."""

from __future__ import annotations

import argparse
import io
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table
from rich.text import Text

from ir.bindings import load_bound_model, parse_dim_options
from ir.drift import outputs_drift
from ir.errors import AsicperfError, first_line
from ir.files import check_output_dir, write_bytes_atomically
from ir.memory import check_fits_in_memory
from ir.model_io import save_model
from ir.seeded_inputs import seeded_inputs
from passes.instruments import VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import PipelineError, make_config, parse_pipeline, split_options
from passes.target_binding import bind_pipeline
from runner.console import console
from runner.report.terminal import WARNING_STYLE, flagged
from runner.spinner import spinner
from targets.isolation import JobResult, TargetJob, run_isolated
from targets.precision_choice import PrecisionChoice, precision_of
from targets.registry import get_target
from zoo.resolve import resolve_model


def register(run: argparse.ArgumentParser) -> None:
    run.add_argument("model", metavar="MODEL", help="path to an .onnx file or a zoo model name")
    run.add_argument(
        "--target",
        required=True,
        metavar="T",
        help='target name, with options: "onnxruntime{threads=2}"',
    )
    run.add_argument("--pipeline", metavar="P", help="passes to apply first (see `runner passes`)")
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="an input array (repeatable); seeded random data for inputs not given",
    )
    run.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="give a symbolic dimension a size (repeatable); the seeded inputs take it, "
        "unbound dims are 1",
    )
    run.add_argument("--output-dir", default="outputs", metavar="DIR", help="default: outputs")
    run.add_argument("--compare", metavar="TARGET", help="run the same inputs on a second target")
    run.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds per target run")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(handler=run_model)


def _target_spec(text: str) -> tuple[str, dict[str, str]]:
    """`name{key=value ...}`, checked here (name and options) before any child process runs."""
    try:
        name, options = split_options(text, text)
    except PipelineError as error:
        raise AsicperfError(f"target '{text}': {error}") from None
    make_config(type(get_target(name)), options, kind="target")
    return name, options


def _check_numbers(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise AsicperfError(f"--timeout {args.timeout:g}: expected a number of seconds > 0")
    if args.seed < 0:
        raise AsicperfError(f"--seed {args.seed}: expected an integer >= 0")


# What every .npy file starts with (numpy's format spec); an .npz archive is a zip file.
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class GivenInput:
    """An `--input NAME=FILE.npy` array, with the text that named it for messages."""

    text: str
    array: np.ndarray


def _read_inputs(pairs: list[str]) -> dict[str, GivenInput]:
    given: dict[str, GivenInput] = {}
    for pair in pairs:
        name, equals, file = pair.partition("=")
        if not equals or not name or not file:
            raise AsicperfError(f"--input '{pair}': expected NAME=FILE.npy")
        if name in given:
            raise AsicperfError(f"--input {pair}: input '{name}' is already given")
        given[name] = GivenInput(pair, _read_npy(Path(file), pair))
    return given


def _read_npy(path: Path, pair: str) -> np.ndarray:
    """The array in a .npy file; anything else is a one-line error naming `--input pair`."""
    what = f"--input {pair}"
    if not path.exists():
        raise AsicperfError(f"{what}: no such file")
    if path.is_dir():
        raise AsicperfError(f"{what}: is a folder, not a .npy file")
    try:
        with path.open("rb") as stream:
            magic = stream.read(len(_NPY_MAGIC))
            if magic != _NPY_MAGIC:
                kind = (
                    "a zip or .npz archive" if magic.startswith(_ZIP_MAGIC) else "no numpy header"
                )
                raise AsicperfError(
                    f"{what}: not a .npy file ({kind}; write one array per input with numpy.save)"
                )
            stream.seek(0)
            return np.load(stream, allow_pickle=False)
    except OSError as error:
        raise AsicperfError(f"{what}: cannot read it ({error.strerror or error})") from None
    except ValueError as error:  # a truncated file, or an array of Python objects
        if "allow_pickle" in str(error):
            raise AsicperfError(
                f"{what}: holds Python objects (dtype object), not numbers"
            ) from None
        raise AsicperfError(f"{what}: corrupt .npy file ({first_line(error)})") from None


def _check_feeds(model_inputs: dict[str, tuple], given: dict[str, GivenInput]) -> None:
    for name, item in given.items():
        what, array = f"--input {item.text}", item.array
        if name not in model_inputs:
            known = ", ".join(model_inputs)
            raise AsicperfError(f"{what}: the model has no input '{name}' (inputs: {known})")
        dtype, shape = model_inputs[name]
        if array.dtype != dtype:
            raise AsicperfError(
                f"{what}: dtype {array.dtype}, the model's input '{name}' is {dtype}"
            )
        fits = len(shape) == array.ndim and all(
            not isinstance(d, int) or d == n for d, n in zip(shape, array.shape, strict=True)
        )
        if not fits:
            raise AsicperfError(
                f"{what}: shape {list(array.shape)} does not match the model's "
                f"{[d if isinstance(d, int) else str(d) for d in shape]}"
            )


def run_model(args: argparse.Namespace) -> int:
    target, options = _target_spec(args.target)
    compare = _target_spec(args.compare) if args.compare else None
    # fusions make only the ops the target runs (see passes.target_binding); bound to the name
    # as given, which the passes resolve through the registry (a `module:Class` included)
    passes = parse_pipeline(bind_pipeline(args.pipeline, target)) if args.pipeline else []
    _check_numbers(args)
    bindings = parse_dim_options(args.dim)
    output_dir = check_output_dir(args.output_dir, "--output-dir")
    model = load_bound_model(resolve_model(args.model), bindings)
    check_fits_in_memory(model, f"model {args.model}")
    model_inputs = {
        v.name: (np.dtype(v.dtype.numpy()), tuple(v.shape.dims) if v.shape else ())
        for v in model.graph.inputs
        if not v.is_initializer() and v.dtype is not None
    }
    given = _read_inputs(args.input)
    _check_feeds(model_inputs, given)
    if passes:
        run_pipeline(model, passes, [VerifyAfterEachPass()])
    feeds = {**seeded_inputs(model, args.seed, bindings), **{k: g.array for k, g in given.items()}}
    runs = [(target, options), *([compare] if compare is not None else [])]
    with tempfile.TemporaryDirectory(prefix="asicperf-run-") as folder:
        path = save_model(model, Path(folder) / "model.onnx")
        jobs = [TargetJob(name, target_options, path, feeds) for name, target_options in runs]
        results = [_run(job, args) for job in jobs]
    main = results[0]
    files = _write_outputs(output_dir, main) if main.ok else []
    document = _document(args.model, results, files, [v.name for v in model.graph.outputs])
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        _print(document)
    return 0 if all(result.ok for result in results) else 1


def _run(job: TargetJob, args: argparse.Namespace) -> JobResult:
    """The job in its child process; a spinner on a terminal meanwhile (compiling for tvm takes
    half a minute the parent cannot report step by step)."""
    with spinner(f"compiling and running on {job.target}…", enabled=not args.json):
        return run_isolated(job, args.timeout)


def _write_outputs(folder: Path, result: JobResult) -> list[str]:
    files = []
    for index, array in enumerate(result.outputs or []):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        path = folder / f"output_{index}.npy"
        write_bytes_atomically(path, buffer.getvalue())
        files.append(str(path))
    return files


def _document(model: str, results: list[JobResult], files: list[str], names: list[str]) -> dict:
    main = results[0]
    doc: dict = {"model": model, "runs": []}
    for result in results:
        record = result.compile_record or {}
        partition = record.get("partition") or {}
        precision = precision_of(record)
        doc["runs"].append(
            {
                "target": result.target,
                "ok": result.ok,
                "error": result.error,
                "device": (result.info or {}).get("device"),
                "run_ms": result.run_ms,
                "compile_ms": record.get("wall_ms"),
                "ir_fingerprint": record.get("in_fingerprint"),
                "node_coverage": partition.get("node_coverage"),
                "flop_coverage": partition.get("flop_coverage"),
                "fallback_groups": partition.get("fallback_groups"),
                "precision": None if precision is None else precision.to_json(),
                "compile_record": record or None,
            }
        )
    if main.ok:
        doc["outputs"] = [
            {"index": i, "name": name, "shape": list(a.shape), "dtype": str(a.dtype), "file": f}
            for i, (name, a, f) in enumerate(zip(names, main.outputs or [], files, strict=True))
        ]
    if len(results) > 1 and all(result.ok for result in results):
        drift = outputs_drift(results[1].outputs or [], main.outputs or [])
        doc["compare"] = {"reference": results[1].target, "drift": [d.to_json() for d in drift]}
    return doc


def _choice(run: dict) -> PrecisionChoice | None:
    """The precision a run's target recorded, where it recorded one."""
    return None if run["precision"] is None else PrecisionChoice.from_json(run["precision"])


def _precision_cell(choice: PrecisionChoice | None) -> str | Text:
    """The flag, styled as a warning, where the target chose the precision on its own (or
    ignored the one asked); else the precision and who chose it."""
    if choice is None:
        return "-"
    if choice.flag is not None:
        return Text(choice.flag, style=WARNING_STYLE)
    return Text(choice.description)


def _print(doc: dict) -> None:
    out = console()
    table = Table(title=f"run {doc['model']}")
    choices = [_choice(run) for run in doc["runs"]]
    recorded = any(choice is not None for choice in choices)  # a column only where one did
    for column in (
        "target",
        "status",
        "device",
        "compile ms",
        "run ms",
        "coverage (nodes / FLOPs)",
        *(["precision"] if recorded else []),
    ):
        table.add_column(column)
    for run, choice in zip(doc["runs"], choices, strict=True):
        coverage = "-"
        if run["node_coverage"] is not None:
            flops = run["flop_coverage"]
            coverage = f"{run['node_coverage']:.1%} / " + ("-" if flops is None else f"{flops:.1%}")
        status = "ok" if run["ok"] else f"FAILED: {run['error']}"
        compile_ms = "-" if run["compile_ms"] is None else f"{run['compile_ms']:.1f}"
        run_ms = "-" if run["run_ms"] is None else f"{run['run_ms']:.2f}"
        cells: list[str | Text] = [
            run["target"],
            status,
            run["device"] or "-",
            compile_ms,
            run_ms,
            coverage,
        ]
        if recorded:
            cells.append(_precision_cell(choice))
        table.add_row(*cells)
    out.print(table)
    for output in doc.get("outputs", []):
        out.print(
            f"output {output['index']} {output['name']} "
            f"{output['dtype']}{output['shape']} -> {output['file']}",
            markup=False,
        )
    if "compare" in doc:
        # beside the drift, the flag of either run whose target chose its precision
        flags = [
            f"{run['target']}: {choice.flag}"
            for run, choice in zip(doc["runs"], choices, strict=True)
            if choice is not None and choice.flag is not None
        ]
        title = f"drift against {doc['compare']['reference']}"
        drift = Table(title=flagged(title, "; ".join(flags) or None))
        for column in ("output", "max abs", "mean abs", "max rel", "cosine"):
            drift.add_column(column)
        for d in doc["compare"]["drift"]:
            drift.add_row(
                str(d["index"]),
                f"{d['max_abs']:.3g}",
                f"{d['mean_abs']:.3g}",
                f"{d['max_rel']:.3g}",
                f"{d['cosine']:.7f}",
            )
        out.print(drift)
