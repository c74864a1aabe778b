"""Vendors' runtimes side by side, one run, behind docs/benchmarks/vendors.md.

    python docs/benchmarks/vendors.py [--resume]

`runner bench --level model` (single-stream, the run length of model_level.py, batch 1 and 8)
for ResNet-50 and BERT-base on each setup a user would compare: onnxruntime and tvm on the
model as exported, OpenVINO with `precision=f32`, OpenVINO as it comes (on a CPU with
AVX512-BF16 it computes in bfloat16 unless told otherwise), OpenVINO with the `int8` pipeline,
and onnxruntime with it as the int8 baseline. The table puts each figure beside the precision
the target computed in and who chose it (the result's `precision` record), so a speed-up bought
with a silent precision change reads as one.

A bench result carries the precision record but not the compile record, so for the OpenVINO
setups the script also runs `runner run --json` once (batch 1) and reads what OpenVINO's runtime
model executes: layers per runtime precision, and how many convolution and matrix layers run
int8 kernels.

The machine may be shared: before each bench the script waits for a quiet load average
(tvm_cpu.py's wait), runs a bench again when its query latencies show that other work
slowed part of it anyway, and the table gives the load each bench started at. Results stay
under bench-results/docs/vendors/, so an interrupted run continues with --resume.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_level import RUN_LENGTH, command
from tvm_cpu import QUIET_LOAD, QUIET_WAIT_S, wait_for_quiet

from ir.files import write_text_atomically
from runner.bench_output import file_name_part
from runner.results.files import RESULT_FILE
from targets.device import host_device
from targets.hardware.host import detect_cpu
from targets.precision_choice import PrecisionChoice

MODELS = ("resnet50", "bert-base")
BATCHES = (1, 8)
RESULTS = Path("bench-results/docs/vendors")
OUT = Path(__file__).with_name("vendors.md")
# A bench whose p90 over median, or median over fastest query, is beyond this is run again.
SPREAD = 1.2
TRIES = 3


@dataclass(frozen=True)
class Setup:
    """A target spec and pipeline, exactly as given on the command line ("" : no pipeline)."""

    target: str
    pipeline: str

    @property
    def name(self) -> str:
        """A folder name: the spec and the pipeline in file-name characters."""
        return f"{file_name_part(self.target)}-{file_name_part(self.pipeline) or 'no-pipeline'}"

    @property
    def is_openvino(self) -> bool:
        return self.target.split("{")[0] == "openvino"


ORT_FP32 = Setup("onnxruntime", "")
ORT_INT8 = Setup("onnxruntime", "int8")
OV_F32 = Setup("openvino{precision=f32}", "")
OV_DEFAULT = Setup("openvino", "")
OV_INT8 = Setup("openvino", "int8")
SETUPS = (ORT_FP32, ORT_INT8, Setup("tvm", ""), OV_F32, OV_DEFAULT, OV_INT8)


@dataclass(frozen=True)
class Figures:
    """One batch size of one bench, as the page shows it."""

    samples_per_s: float
    p99_ms: float
    max_abs: float  # the largest over the outputs
    cosine: float  # the lowest over the outputs
    node_coverage: float | None
    valid: bool
    precision: PrecisionChoice | None  # None: the target recorded none

    @classmethod
    def of(cls, result: Mapping[str, Any], batch: Mapping[str, Any]) -> Figures:
        outputs = batch["drift"]["outputs"]
        precision = batch.get("precision") or result.get("precision")
        return cls(
            samples_per_s=batch["qps"],
            p99_ms=batch["latency_ms"]["p99"],
            max_abs=max((d["max_abs"] for d in outputs), default=float("nan")),
            cosine=min((d["cosine"] for d in outputs), default=float("nan")),
            node_coverage=(batch.get("coverage") or {}).get("node_coverage"),
            valid=batch["valid"],
            precision=None if precision is None else PrecisionChoice.from_json(precision),
        )


@dataclass(frozen=True)
class Bench:
    """One setup's bench on one model: its figures by batch size, or why it failed."""

    model: str
    setup: Setup
    command: str
    load: float  # the 1-minute load average it started at
    figures: Mapping[int, Figures]
    target_info: Mapping[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class Runtime:
    """What OpenVINO's runtime model executes, summed over the segments it compiled."""

    precision: PrecisionChoice | None
    streams: int
    threads: int
    layer_precisions: Mapping[str, int]  # computing layers per runtime precision
    matrix_layers: int  # convolutions, fully connected layers and matmuls
    int8_matrix_layers: int


def disturbed(result: Mapping[str, Any]) -> bool:
    """Single-stream queries on a quiet machine take nearly the same time: a p90 or median far
    beyond the fastest query means other work slowed part of the run."""
    for batch in result["batches"]:
        latency = batch["latency_ms"]
        if max(latency["p90"] / latency["p50"], latency["p50"] / latency["min"]) > SPREAD:
            return True
    return False


def run_bench(model: str, setup: Setup, resume: bool) -> Bench:
    """Wait for a quiet machine and run the bench, again (up to TRIES) while it comes out
    disturbed; a finished one that --resume reads back keeps the load it started at (saved
    beside its folder)."""
    folder = RESULTS / f"{model}-{setup.name}"
    argv = command(model, setup.target, setup.pipeline, folder, resume)
    shown = shlex.join(a for a in argv if a not in ("--json", "--resume"))
    load_file = folder.with_name(f"{folder.name}.load")
    finished = resume and (folder / RESULT_FILE).exists() and load_file.exists()
    for attempt in range(1, TRIES + 1):
        load = float(load_file.read_text()) if finished else wait_for_quiet()
        print(f"running (load {load:.2f}): {shown}", file=sys.stderr, flush=True)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["no output"]
            errors = [line for line in lines if line.startswith("runner: error:")]
            return Bench(model, setup, shown, load, {}, None, (errors or lines)[-1])
        result = json.loads(done.stdout)
        if finished or attempt == TRIES or not disturbed(result):
            break
        print("disturbed by other work: once more", file=sys.stderr, flush=True)
        shutil.rmtree(folder)
    if not finished:
        write_text_atomically(load_file, f"{load}\n")
    figures = {b["batch_size"]: Figures.of(result, b) for b in result["batches"]}
    return Bench(model, setup, shown, load, figures, result["target_info"], None)


def run_command(model: str, setup: Setup) -> list[str]:
    return ["runner", "run", model, "--target", setup.target, "--pipeline", setup.pipeline]


def compile_record(model: str, setup: Setup, resume: bool) -> Mapping[str, Any] | None:
    """The compile record of `runner run` on the setup (None when the run failed), kept
    under RESULTS so that --resume reads it back."""
    path = RESULTS / f"{model}-{setup.name}.compile.json"
    if resume and path.exists():
        return json.loads(path.read_text())
    argv = [*run_command(model, setup), "--json"]
    print(f"running: {shlex.join(argv)}", file=sys.stderr, flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    record = json.loads(done.stdout)["runs"][0]["compile_record"]
    write_text_atomically(path, json.dumps(record, indent=1))
    return record


def runtime_of(record: Mapping[str, Any]) -> Runtime:
    """Summed over the record's OpenVINO compiles: the record itself, or the segments of a
    partitioned compile that carry OpenVINO's layer summary."""
    compiles = [r for r in (record, *record.get("segments", ())) if "layer_precisions" in r]
    layers: Counter[str] = Counter()
    for one in compiles:
        layers.update(one["layer_precisions"])
    first = compiles[0] if compiles else {}
    return Runtime(
        precision=PrecisionChoice.from_json(first["precision"]) if "precision" in first else None,
        streams=first.get("streams", 0),
        threads=first.get("threads", 0),
        layer_precisions=dict(layers.most_common()),
        matrix_layers=sum(one["int8"]["matrix_layers"] for one in compiles),
        int8_matrix_layers=sum(one["int8"]["int8_matrix_layers"] for one in compiles),
    )


# --- the page -------------------------------------------------------------------------------


def _precision_cell(choice: PrecisionChoice | None) -> str:
    if choice is None:
        return "not recorded"
    return f"**{choice.flag}**" if choice.flag else choice.description


def _pipeline_cell(setup: Setup) -> str:
    return f"`{setup.pipeline}`" if setup.pipeline else "none (FP32)"


def bench_rows(benches: list[Bench]) -> list[str]:
    baseline = {
        (b.model, size): f for b in benches if b.setup == ORT_FP32 for size, f in b.figures.items()
    }
    rows = []
    for bench in benches:
        where = f"| {bench.model} | `{bench.setup.target}` | {_pipeline_cell(bench.setup)}"
        if bench.error is not None:
            rows.append(
                f"{where} | - | - | - | - | - | - | - | - | FAILED: {bench.error} "
                f"| {bench.load:.2f} |"
            )
            continue
        for size, f in bench.figures.items():
            base = baseline.get((bench.model, size))
            ratio = "-" if base is None else f"{f.samples_per_s / base.samples_per_s:.2f}"
            coverage = "-" if f.node_coverage is None else f"{f.node_coverage:.0%}"
            rows.append(
                f"{where} | {size} | {f.samples_per_s:.3g} | {f.p99_ms:.1f} | {ratio} "
                f"| {_precision_cell(f.precision)} | {coverage} | {f.max_abs:.2g} "
                f"| {f.cosine:.6f} | {'VALID' if f.valid else 'INVALID'} | {bench.load:.2f} |"
            )
    return rows


def runtime_rows(runtimes: Mapping[tuple[str, Setup], Runtime | None]) -> list[str]:
    rows = []
    for (model, setup), runtime in runtimes.items():
        where = f"| {model} | `{setup.target}` | {_pipeline_cell(setup)}"
        if runtime is None:
            rows.append(
                f"{where} | FAILED: see `{shlex.join(run_command(model, setup))}` | - | - | - | - |"
            )
            continue
        layers = ", ".join(f"{kind} {count}" for kind, count in runtime.layer_precisions.items())
        rows.append(
            f"{where} | {_precision_cell(runtime.precision)} "
            f"| {runtime.streams} | {runtime.threads} | {layers} "
            f"| {runtime.int8_matrix_layers} of {runtime.matrix_layers} |"
        )
    return rows


@dataclass(frozen=True)
class Reading:
    """The figures of one model, by setup and batch size, for the prose under the table."""

    model: str
    figures: Mapping[tuple[Setup, int], Figures]

    def ratios(self, over: Setup, under: Setup) -> str | None:
        """ "1.85x and 1.90x (batch 1 and 8)" or None when either setup lacks a figure."""
        pairs = [(self.figures.get((over, b)), self.figures.get((under, b))) for b in BATCHES]
        if any(a is None or c is None for a, c in pairs):
            return None
        ratios = " and ".join(f"{a.samples_per_s / c.samples_per_s:.2f}x" for a, c in pairs)
        return f"{ratios} (batch {' and '.join(str(b) for b in BATCHES)})"

    def max_abs(self, setup: Setup) -> float | None:
        """The largest over the batch sizes."""
        found = [self.figures[(setup, b)].max_abs for b in BATCHES if (setup, b) in self.figures]
        return max(found) if found else None

    def drift(self, setup: Setup) -> str | None:
        """The worst drift over the batch sizes: "max abs 0.035 (cosine 0.999812)"."""
        max_abs = self.max_abs(setup)
        if max_abs is None:
            return None
        cosine = min(self.figures[(setup, b)].cosine for b in BATCHES if (setup, b) in self.figures)
        return f"max abs {max_abs:.2g} (cosine {cosine:.6f})"

    def precision(self, setup: Setup) -> str:
        choices = {
            self.figures[(setup, b)].precision for b in BATCHES if (setup, b) in self.figures
        }
        return " / ".join(sorted(_precision_cell(c) for c in choices))


def reading_lines(reading: Reading, runtime: Runtime | None) -> list[str]:
    """One bullet per question the page answers; a bullet whose figures are missing is left out."""
    lines = []
    model = reading.model
    speedup = reading.ratios(OV_DEFAULT, OV_F32)
    default_max, f32_max = reading.max_abs(OV_DEFAULT), reading.max_abs(OV_F32)
    if speedup and default_max is not None and f32_max:
        times = float(f"{default_max / f32_max:.2g}")  # to two significant figures
        lines.append(
            f"- {model}: OpenVINO's default ({reading.precision(OV_DEFAULT)}) runs at {speedup} "
            f"the samples/s of `precision=f32`, and drifts about {times:.0f} times as far from "
            f"the reference: {reading.drift(OV_DEFAULT)} against f32's "
            f"{reading.drift(OV_F32)}."
        )
    against_ort = reading.ratios(OV_F32, ORT_FP32)
    if against_ort:
        lines.append(
            f"- {model}: OpenVINO f32 runs at {against_ort} the samples/s of onnxruntime FP32."
        )
    int8 = [
        f"{label}: {ratio}"
        for label, setup in (
            ("onnxruntime FP32", ORT_FP32),
            ("OpenVINO default", OV_DEFAULT),
            ("onnxruntime int8", ORT_INT8),
        )
        if (ratio := reading.ratios(OV_INT8, setup))
    ]
    int8_drift, ort_int8_drift = reading.drift(OV_INT8), reading.drift(ORT_INT8)
    if int8 and int8_drift:
        kernels = (
            ""
            if runtime is None
            else f" ({runtime.int8_matrix_layers} of its {runtime.matrix_layers} convolution and "
            "matrix layers on int8 kernels, the other layers left to its default precision)"
        )
        beside = f", onnxruntime int8's {ort_int8_drift}" if ort_int8_drift else ""
        lines.append(
            f"- {model}: OpenVINO with `int8`{kernels}, samples/s against "
            f"{'; against '.join(int8)}. Its drift: {int8_drift}{beside}."
        )
    return lines


def versions(benches: list[Bench]) -> str:
    found = {b.target_info["name"]: b.target_info["version"] for b in benches if b.target_info}
    return ", ".join(f"{name} {version}" for name, version in sorted(found.items()))


def page(benches: list[Bench], runtimes: Mapping[tuple[str, Setup], Runtime | None]) -> str:
    cpu = detect_cpu()  # its ISA flags say what the kernels can use: bf16, VNNI int8, AMX
    readings = []
    for model in MODELS:
        figures = {
            (b.setup, size): f for b in benches if b.model == model for size, f in b.figures.items()
        }
        readings += reading_lines(Reading(model, figures), runtimes.get((model, OV_INT8)))
    commands = [b.command for b in benches]
    commands += [shlex.join(run_command(model, setup)) + " --json" for model, setup in runtimes]
    return "\n".join(
        [
            "# Vendors side by side",
            "",
            f"Host: {host_device()} (family {cpu.family}, model {cpu.model_number}; ISA flags: "
            f"{', '.join(cpu.flags) or 'none of interest'}). "
            f"Targets: {versions(benches)}. Generated by `python docs/benchmarks/vendors.py`, "
            "its benches run back to back on this host: "
            f"MLPerf LoadGen's single-stream scenario, {RUN_LENGTH[0]} s and {RUN_LENGTH[1]} "
            "queries minimum per batch size; samples/s, p99 and the verdict are LoadGen's. The "
            "ratio is samples/s over onnxruntime's on the model as exported, same model and batch "
            "size. Precision: what the target reports it computed in and who chose it "
            "(as in the model; asked: a target option; flagged in bold where the target chose "
            "on its own); onnxruntime and tvm record none, as they run the model's types "
            "(with `int8`, the QDQ graph's). Drift: the largest absolute difference and lowest "
            "cosine of the outputs against the FP32 model on the `reference` target, on the "
            "seeded batch; the zoo's models carry seeded random weights, not trained ones. The "
            "machine may be shared: before each bench the script waited up to "
            f"{QUIET_WAIT_S} s for a 1-minute load average below {QUIET_LOAD}; `load` is the one "
            "it started at. A bench that other work disturbed all the same (at either batch size, "
            f"a p90 over the median, or a median over the fastest query, beyond {SPREAD}x) was "
            f"run again, up to {TRIES} times; the table shows the last.",
            "",
            "| model | target | pipeline | batch | samples/s | p99 ms | vs onnxruntime FP32 "
            "| precision | nodes on target | max abs drift | cosine | verdict | load |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- "
            "| ---: |",
            *bench_rows(benches),
            "",
            "## What OpenVINO executes",
            "",
            "A bench result records the precision but not the compile record, so these come from "
            "`runner run --json` on each OpenVINO setup (batch 1): the precision its compile "
            "record reports, the streams and threads OpenVINO picked, the computing layers of "
            "its runtime model by runtime precision, and the convolution and matrix layers "
            "(Convolution, FullyConnected, MatMul) that run int8 kernels.",
            "",
            "| model | target | pipeline | precision | streams | threads | layers by precision "
            "| int8 matrix layers |",
            "| --- | --- | --- | --- | ---: | ---: | --- | ---: |",
            *runtime_rows(runtimes),
            "",
            "## Reading the figures",
            "",
            *readings,
            "",
            "## Commands",
            "",
            "The benches, then the compile records:",
            "",
            "\n".join(["```bash", *commands, "```"]),
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    benches: list[Bench] = []
    runtimes: dict[tuple[str, Setup], Runtime | None] = {}
    for model in MODELS:
        for setup in SETUPS:
            benches.append(run_bench(model, setup, args.resume))
            if setup.is_openvino:
                record = compile_record(model, setup, args.resume)
                runtimes[(model, setup)] = None if record is None else runtime_of(record)
    write_text_atomically(OUT, page(benches, runtimes))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
