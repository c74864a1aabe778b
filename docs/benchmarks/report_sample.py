"""The sample dashboard in docs/report/: this machine's results, drawn by `runner report html`.

    python docs/benchmarks/report_sample.py [--resume]

Runs `runner bench` for ResNet-50 and BERT-base (FP32 and the int8 pipeline on onnxruntime,
FP32 on tvm; single-stream, batch 1, 4 and 8), reads the op-level results of
docs/benchmarks/op_level.py (run that first), and writes docs/report/sample-report.html with
the exact commands in docs/report/README.md. Results stay under bench-results/report/, so an
interrupted run continues with --resume.

The host is not in the hardware database. The report prices it at AWS's on-demand rate for a
2-vCPU Sapphire Rapids instance (c7i.large, us-east-1), given with --price. No power is given,
because a VM's share of a socket's power is not published.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from ir.files import write_text_atomically

RUNS = (  # (model, target, pipeline label, pipeline spec)
    ("resnet50", "onnxruntime", "FP32", ""),
    ("resnet50", "onnxruntime", "INT8", "int8"),
    ("resnet50", "tvm", "FP32", ""),
    ("bert-base", "onnxruntime", "FP32", ""),
    ("bert-base", "onnxruntime", "INT8", "int8"),
    ("bert-base", "tvm", "FP32", ""),
)
BATCHES = "1,4,8"
RESULTS = Path("bench-results/report")
OP_RESULTS = Path("bench-results/op-cpu-headline")
OUT = Path("docs/report")  # run from the repository root, like the bench-results paths
HOST_PRICE = "host=0.08925/h"  # AWS EC2 c7i.large on-demand, us-east-1 (2 vCPU, Sapphire Rapids)


def bench_command(model: str, target: str, pipeline: str, out: Path, resume: bool) -> list[str]:
    return [
        *("runner", "bench", "--level", "model", "--model", model, "--target", target),
        *("--pipeline", pipeline, "--batch", BATCHES, "--scenario", "single-stream"),
        *("--min-duration", "3", "--min-queries", "30", "--out", str(out)),
        *(["--resume"] if resume else []),
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    commands, folders = [], []
    for model, target, label, pipeline in RUNS:
        folder = RESULTS / f"{model}-{target}-{label}"
        argv = bench_command(model, target, pipeline, folder, args.resume)
        commands.append(shlex.join(a for a in argv if a != "--resume"))
        print(f"running: {commands[-1]}", file=sys.stderr, flush=True)
        if subprocess.run(argv, check=False).returncode != 0:
            print(f"report_sample: {commands[-1]} failed", file=sys.stderr)
            return 1
        folders.append(str(folder))
    report = OUT / "sample-report.html"
    html = ["runner", "report", "html", *folders, str(OP_RESULTS), "-o", str(report)]
    html += ["--price", HOST_PRICE]
    commands.append(shlex.join(html))
    if subprocess.run(html, check=False).returncode != 0:
        return 1
    readme = [
        "# Sample report",
        "",
        "[sample-report.html](sample-report.html) is one self-contained file (open it in any",
        "browser; it needs no network). `python docs/benchmarks/report_sample.py` made it, by",
        "running these commands on this machine (2-core Sapphire Rapids VM, no GPU):",
        "",
        "```bash",
        "python docs/benchmarks/op_level.py   # the op-level results",
        *commands,
        "```",
        "",
        f"`--price {HOST_PRICE}` is AWS's on-demand rate for a 2-vCPU Sapphire Rapids instance",
        "(c7i.large, us-east-1). The host is not in the hardware database. No power figure is",
        "given, because a VM's share of a socket's power is not published. The accelerators in",
        "the hardware comparison take their prices and TDPs from the database.",
        "",
    ]
    write_text_atomically(OUT / "README.md", "\n".join(readme))
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
