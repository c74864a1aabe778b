"""Model-level benchmark matrix behind docs/benchmarks/model-level.md.

    python docs/benchmarks/model_level.py [--targets onnxruntime,tvm] [--resume]

Runs `runner bench --level model` for ResNet-50 and BERT-base at batch 1 and 8, FP32 (no
passes) and O1, on each target, and writes the table (QPS, p99, drift against the reference
target) with the exact commands. Results of each run stay under bench-results/docs/, so an
interrupted matrix continues with --resume.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ir.files import write_text_atomically
from targets.device import host_device

MODELS = ("resnet50", "bert-base")
PIPELINES = {"FP32": "", "O1": "O1"}
# Unscheduled TVM runs a ResNet-50 inference in seconds: fewer queries keep the matrix short.
RUN_LENGTH = {"onnxruntime": ("2", "20"), "tvm": ("0", "2")}
# Unscheduled TVM needs ~34 s per BERT-base query at batch 1; batch 8 waits for schedules.
BATCHES = {("bert-base", "tvm"): "1"}
OUT = Path(__file__).with_name("model-level.md")


def command(model: str, target: str, pipeline: str, out: Path, resume: bool) -> list[str]:
    duration, queries = RUN_LENGTH.get(target, ("2", "20"))
    return [
        *("runner", "bench", "--level", "model", "--model", model, "--target", target),
        *("--pipeline", pipeline, "--batch", BATCHES.get((model, target), "1,8")),
        *("--scenario", "single-stream"),
        *("--min-duration", duration, "--min-queries", queries, "--out", str(out), "--json"),
        *(["--resume"] if resume else []),
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", default="onnxruntime,tvm")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    rows, commands = [], []
    for target in args.targets.split(","):
        for model in MODELS:
            for label, pipeline in PIPELINES.items():
                out = Path("bench-results/docs") / f"{model}-{target}-{label}"
                argv = command(model, target, pipeline, out, args.resume)
                shown = " ".join(a if a else '""' for a in argv[:-1] if a != "--resume")
                commands.append(shown)
                print(f"running: {shown}", file=sys.stderr, flush=True)
                start = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    lines = done.stderr.strip().splitlines()
                    errors = [line for line in lines if line.startswith("runner: error:")]
                    rows.append((model, target, label, None, (errors or lines)[-1]))
                    continue
                doc = json.loads(done.stdout)
                rows.append((model, target, label, doc, f"{time.perf_counter() - start:.0f} s"))
    lines = [
        "# Model-level benchmarks",
        "",
        f"Host: {host_device()}. Single-stream (one batch per query), onnxruntime "
        f"{RUN_LENGTH['onnxruntime'][0]} s / {RUN_LENGTH['onnxruntime'][1]} queries minimum per "
        f"batch size, tvm {RUN_LENGTH['tvm'][1]} queries (TVM is unscheduled here: schedules "
        "come with the TVM schedule issue; BERT-base on tvm runs batch 1 only, ~34 s a query). "
        "O1 on tvm is a partitioned run: the com.microsoft ops O1 creates go to the reference "
        "path. Drift: largest absolute difference and lowest "
        "cosine of the outputs against the `reference` target on the seeded batch. Generated "
        "by `python docs/benchmarks/model_level.py`.",
        "",
        "| model | target | pipeline | batch | samples/s | p99 ms | compile s | max abs drift "
        "| cosine | verdict |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for model, target, label, doc, note in rows:
        if doc is None:
            lines.append(
                f"| {model} | {target} | {label} | - | - | - | - | - | - | FAILED: {note} |"
            )
            continue
        for batch in doc["batches"]:
            drift = batch.get("drift") or {}
            outputs = drift.get("outputs", [])
            max_abs = max((d["max_abs"] for d in outputs), default=float("nan"))
            cosine = min((d["cosine"] for d in outputs), default=float("nan"))
            lines.append(
                f"| {model} | {target} | {label} | {batch['batch_size']} | {batch['qps']:.3g} "
                f"| {batch['latency_ms']['p99']:.1f} | {batch['compile_s']:.1f} "
                f"| {max_abs:.2g} | {cosine:.6f} | {'VALID' if batch['valid'] else 'INVALID'} |"
            )
    lines += ["", "Commands:", "", "```bash", *commands, "```", ""]
    write_text_atomically(OUT, "\n".join(lines))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
