"""`runner run MODEL --target T`: one inference on a target (in its own process), outputs
written as .npy files, optionally compared with a second target."""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from rich.table import Table

from ir.drift import outputs_drift
from ir.errors import AsicperfError
from ir.files import write_bytes_atomically
from ir.model_io import load_model, save_model
from passes.instruments import VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import PipelineError, make_config, parse_pipeline, split_options
from runner.console import console
from targets.isolation import JobResult, TargetJob, run_isolated
from targets.registry import get_target
from zoo.resolve import resolve_model
from zoo.synthetic_inputs import seeded_inputs


def register(groups: argparse._SubParsersAction) -> None:
    run = groups.add_parser("run", help="one inference on a target, optionally compared")
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


def _read_inputs(pairs: list[str]) -> dict[str, np.ndarray]:
    arrays = {}
    for pair in pairs:
        name, equals, file = pair.partition("=")
        if not equals or not name or not file:
            raise AsicperfError(f"--input '{pair}': expected NAME=FILE.npy")
        try:
            arrays[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise AsicperfError(f"--input {name}: cannot read '{file}': {error}") from None
    return arrays


def _check_feeds(model_inputs: dict[str, tuple], given: dict[str, np.ndarray]) -> None:
    for name, array in given.items():
        if name not in model_inputs:
            known = ", ".join(model_inputs)
            raise AsicperfError(f"--input {name}: the model has no such input (inputs: {known})")
        dtype, shape = model_inputs[name]
        if array.dtype != dtype:
            raise AsicperfError(f"--input {name}: dtype {array.dtype}, the model wants {dtype}")
        fits = len(shape) == array.ndim and all(
            not isinstance(d, int) or d == n for d, n in zip(shape, array.shape, strict=True)
        )
        if not fits:
            raise AsicperfError(
                f"--input {name}: shape {list(array.shape)} does not match the model's "
                f"{[d if isinstance(d, int) else str(d) for d in shape]}"
            )


def run_model(args: argparse.Namespace) -> int:
    target, options = _target_spec(args.target)
    compare = _target_spec(args.compare) if args.compare else None
    passes = parse_pipeline(args.pipeline) if args.pipeline else []
    model = load_model(resolve_model(args.model))
    if passes:
        run_pipeline(model, passes, [VerifyAfterEachPass()])
    model_inputs = {
        v.name: (np.dtype(v.dtype.numpy()), tuple(v.shape.dims) if v.shape else ())
        for v in model.graph.inputs
        if not v.is_initializer() and v.dtype is not None
    }
    given = _read_inputs(args.input)
    _check_feeds(model_inputs, given)
    feeds = {**seeded_inputs(model, args.seed), **given}
    with tempfile.TemporaryDirectory(prefix="asicperf-run-") as folder:
        path = save_model(model, Path(folder) / "model.onnx")
        results = [run_isolated(TargetJob(target, options, path, feeds), args.timeout)]
        if compare is not None:
            results.append(run_isolated(TargetJob(*compare, path, feeds), args.timeout))
    main = results[0]
    files = _write_outputs(Path(args.output_dir), main) if main.ok else []
    document = _document(args.model, results, files, [v.name for v in model.graph.outputs])
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        _print(document)
    return 0 if all(result.ok for result in results) else 1


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


def _print(doc: dict) -> None:
    out = console()
    table = Table(title=f"run {doc['model']}")
    for column in (
        "target",
        "status",
        "device",
        "compile ms",
        "run ms",
        "coverage (nodes / FLOPs)",
    ):
        table.add_column(column)
    for run in doc["runs"]:
        coverage = "-"
        if run["node_coverage"] is not None:
            flops = run["flop_coverage"]
            coverage = f"{run['node_coverage']:.1%} / " + ("-" if flops is None else f"{flops:.1%}")
        status = "ok" if run["ok"] else f"FAILED: {run['error']}"
        compile_ms = "-" if run["compile_ms"] is None else f"{run['compile_ms']:.1f}"
        run_ms = "-" if run["run_ms"] is None else f"{run['run_ms']:.2f}"
        table.add_row(run["target"], status, run["device"] or "-", compile_ms, run_ms, coverage)
    out.print(table)
    for output in doc.get("outputs", []):
        out.print(
            f"output {output['index']} {output['name']} "
            f"{output['dtype']}{output['shape']} -> {output['file']}",
            markup=False,
        )
    if "compare" in doc:
        drift = Table(title=f"drift against {doc['compare']['reference']}")
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
