"""The tvm target on this CPU, with the project's schedule rules, behind docs/benchmarks/tvm-cpu.md.

    python docs/benchmarks/tvm_cpu.py

1. matmul 1024³ and 2048³ (both operands inputs): the scheduled TVM kernel vs numpy (OpenBLAS),
   GFLOP/s and the share of the host's measured GEMM rate.
2. ResNet-50 and BERT-base, FP32, batch 1 and 8: a cold compile (time, and which rule scheduled
   how many functions), then a per-function profile grouped by op type (what limits it).
3. `runner bench --level model` (single-stream) on onnxruntime and on tvm: QPS, p99, drift
   against the reference target. The tvm runs find the library compiled in step 2 in the cache.

The script runs with a fresh, temporary TVM cache, so step 2's compile is always cold.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper

from ir.files import CACHE_ENV, cache_root, write_text_atomically
from ir.model_io import load_model
from targets.device import host_device
from targets.executable import compile_model
from targets.hardware.host import host_profile
from targets.registry import get_target
from targets.tvm_schedules.profile import leading_op
from targets.tvm_target import TvmConfig
from zoo.cache import model_file
from zoo.catalog import ZOO
from zoo.synthetic_inputs import seeded_inputs

MODELS = ("resnet50", "bert-base")
BATCHES = (1, 8)
MATMUL_SIZES = (1024, 2048)
PROFILE_RUNS = 5
BENCH_TARGETS = ("onnxruntime", "tvm")
OUT = Path(__file__).with_name("tvm-cpu.md")
RESULTS = Path("bench-results/tvm-cpu")


def matmul_model(size: int) -> ir.Model:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        f"matmul{size}",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as folder:
        onnx.save(proto, Path(folder) / "matmul.onnx")
        return load_model(Path(folder) / "matmul.onnx")


def numpy_seconds(a: np.ndarray, b: np.ndarray, repeats: int = 5) -> float:
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_rows(gemm_gflops: float) -> list[str]:
    rows = []
    for size in MATMUL_SIZES:
        model = matmul_model(size)
        executable = compile_model(get_target("tvm"), model, TvmConfig(cache=False))
        schedule = executable.pieces[0][1].record.extra["schedules"][0]
        session = executable.session(1)
        feeds = seeded_inputs(model)
        session.profile(feeds, runs=1)  # warm-up
        tvm_s = sum(session.profile(feeds, runs=PROFILE_RUNS).values())
        np_s = numpy_seconds(feeds["a"], feeds["b"])
        flops = 2 * size**3
        tvm_g, np_g = flops / tvm_s / 1e9, flops / np_s / 1e9
        rows.append(
            f"| {size}³ | {tvm_g:.0f} | {100 * tvm_g / gemm_gflops:.0f} % | {np_g:.0f} "
            f"| {tvm_g / np_g:.2f} | `{schedule['rule']}`: {schedule['detail']} |"
        )
    return rows


def compile_and_profile(name: str, batch: int) -> dict[str, Any]:
    model = load_model(model_file(ZOO[name]), bindings={"batch": batch})
    start = time.perf_counter()
    executable = compile_model(get_target("tvm"), model)
    compile_s = time.perf_counter() - start
    piece = executable.pieces[0][1].record.extra
    rule_of = {s["function"]: s["rule"] for s in piece["schedules"]}
    session = executable.session(batch)
    feeds = seeded_inputs(model, bindings={"batch": batch})
    session.profile(feeds, runs=1)  # warm-up
    spent = session.profile(feeds, runs=PROFILE_RUNS)
    by_op: dict[str, list[Any]] = defaultdict(lambda: [0, 0.0, set()])
    for function, seconds in spent.items():
        entry = by_op[leading_op(function)]
        entry[0] += 1
        entry[1] += seconds
        entry[2].add(rule_of.get(function, "?"))
    return {
        "compile_s": compile_s,
        "rules": piece["schedule_rules"],
        "total_ms": 1e3 * sum(spent.values()),
        "by_op": {op: (n, 1e3 * s, sorted(r)) for op, (n, s, r) in by_op.items()},
    }


def bench_command(model: str, target: str) -> list[str]:
    return [
        *("runner", "bench", "--level", "model", "--model", model, "--target", target),
        *("--pipeline", ""),  # FP32 as exported: the workloads' default pipeline is O1
        *("--batch", ",".join(map(str, BATCHES)), "--scenario", "single-stream"),
        *("--min-duration", "2", "--min-queries", "10"),
        *("--out", str(RESULTS / f"{model}-{target}"), "--json"),
    ]


def run_bench(model: str, target: str) -> dict[str, Any]:
    argv = bench_command(model, target)
    print("running:", shlex.join(argv), file=sys.stderr, flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout)


def fresh_tvm_cache() -> tempfile.TemporaryDirectory[str]:
    """A temporary $ASICPERF_CACHE whose zoo and host entries are the real ones (not rebuilt)."""
    folder = tempfile.TemporaryDirectory(prefix="asicperf-tvm-bench-")
    for entry in ("zoo", "host.json"):
        if (cache_root() / entry).exists():
            os.symlink(cache_root() / entry, Path(folder.name) / entry)
    os.environ[CACHE_ENV] = folder.name
    return folder


def main() -> int:
    gemm_gflops = host_profile().measurement.fp32_gemm_gflops
    with fresh_tvm_cache():
        matmul = matmul_rows(gemm_gflops)
        profiles = {(m, b): compile_and_profile(m, b) for m in MODELS for b in BATCHES}
        benches = {(m, t): run_bench(m, t) for m in MODELS for t in BENCH_TARGETS}
    lines = [
        "# TVM on the CPU: the project's schedule rules",
        "",
        f"Host: {host_device()}; numpy's measured FP32 GEMM rate {gemm_gflops:.0f} GFLOP/s. "
        "Generated by `python docs/benchmarks/tvm_cpu.py` (FP32, no passes beyond the tvm "
        "target's own lowering).",
        "",
        "## matmul",
        "",
        "| size | tvm GFLOP/s | of numpy's GEMM rate | numpy GFLOP/s | tvm / numpy | schedule |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        *matmul,
        "",
        "## Models: tvm vs onnxruntime",
        "",
        "Single-stream, at least 2 s and 10 queries per batch size; drift against the "
        "`reference` target on the seeded batch. tvm's compile column is a cache hit of the "
        "library built cold below: what remains is the ONNX-level lowering (folding, copies of "
        "the weights), which runs on every compile.",
        "",
        "| model | batch | onnxruntime samples/s | tvm samples/s | tvm / onnxruntime | tvm p99 ms "
        "| tvm compile s | tvm max abs drift | tvm cosine |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in MODELS:
        ort = {b["batch_size"]: b for b in benches[(model, "onnxruntime")]["batches"]}
        for batch in benches[(model, "tvm")]["batches"]:
            size = batch["batch_size"]
            outputs = (batch.get("drift") or {}).get("outputs", [])
            max_abs = max((d["max_abs"] for d in outputs), default=float("nan"))
            cosine = min((d["cosine"] for d in outputs), default=float("nan"))
            ratio = batch["qps"] / ort[size]["qps"]
            lines.append(
                f"| {model} | {size} | {ort[size]['qps']:.3g} | {batch['qps']:.3g} "
                f"| {ratio:.2f} | {batch['latency_ms']['p99']:.1f} | {batch['compile_s']:.1f} "
                f"| {max_abs:.2g} | {cosine:.6f} |"
            )
    lines += ["", "## Cold compile and per-function profile", ""]
    for (model, batch), profile in profiles.items():
        rules = ", ".join(f"{rule} {n}" for rule, n in profile["rules"].items())
        lines += [
            f"### {model}, batch {batch}",
            "",
            f"Cold compile {profile['compile_s']:.1f} s; functions by rule: {rules}. "
            f"Sum of function times {profile['total_ms']:.1f} ms per inference "
            f"(mean of {PROFILE_RUNS} runs, timed around each call the Relax VM makes).",
            "",
            "| op type | functions | ms | share | rule |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        ranked = sorted(profile["by_op"].items(), key=lambda item: -item[1][1])
        for op, (count, ms, rules_used) in ranked:
            share = 100 * ms / profile["total_ms"]
            lines.append(f"| {op} | {count} | {ms:.2f} | {share:.1f} % | {', '.join(rules_used)} |")
        lines.append("")
    commands = [shlex.join(bench_command(m, t)) for m in MODELS for t in BENCH_TARGETS]
    lines += ["Bench commands:", "", "```bash", *commands, "```", ""]
    write_text_atomically(OUT, "\n".join(lines))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
