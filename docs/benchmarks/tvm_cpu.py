"""The tvm target on this CPU, with the project's schedule rules, behind docs/benchmarks/tvm-cpu.md.

    python docs/benchmarks/tvm_cpu.py

1. matmul 1024³ and 2048³ (both operands inputs): the scheduled TVM kernel vs numpy (OpenBLAS),
   GFLOP/s and the share of the host's measured GEMM rate.
2. ResNet-50 and BERT-base, FP32, batch 1 and 8: a cold compile (time, and which rule scheduled
   how many functions), then a per-function profile grouped by op type (what limits it).
3. `runner bench --level model` (single-stream, `--pipeline ""`) on onnxruntime, on tvm and on
   tvm with every convolution direct (`tvm{winograd=false}`), alternating, `BENCH_ROUNDS` times
   each: QPS (the best round: other work on the machine only
   ever slows a run down), p99, drift against the reference target, the ratio tvm / onnxruntime
   at each batch size. The tvm runs find the library compiled in step 2 in the cache.

Every figure is labelled with the CPU (its model name, and for tvm the LLVM `mcpu` it compiled
for). The machine may be shared: before each timed step the script waits (up to
`QUIET_WAIT_S`) for the 1-minute load average to drop below `QUIET_LOAD`, and the document
records the load each step started at. The script runs with a fresh, temporary TVM cache, so
step 2's compile is always cold.
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
import onnx_ir as oir
from onnx import TensorProto, helper

from ir.files import CACHE_ENV, cache_root, write_text_atomically
from ir.model_io import load_model
from ir.seeded_inputs import seeded_inputs
from runner.bench_output import file_name_part
from targets.device import host_device
from targets.executable import compile_model
from targets.hardware.host import detect_cpu, host_profile
from targets.registry import get_target
from targets.tvm_schedules.profile import leading_op
from targets.tvm_target import TvmConfig
from zoo.cache import model_file
from zoo.catalog import ZOO

MODELS = ("resnet50", "bert-base")
BATCHES = (1, 8)
MATMUL_SIZES = (1024, 2048)
PROFILE_RUNS = 5
DIRECT = "tvm{winograd=false}"  # every convolution direct: what the Winograd rewrite gains
BENCH_TARGETS = ("onnxruntime", "tvm", DIRECT)
BENCH_ROUNDS = 3
OUT = Path(__file__).with_name("tvm-cpu.md")
RESULTS = Path("bench-results/tvm-cpu")
QUIET_LOAD = 0.8  # 1-minute load average below which timings are taken
QUIET_WAIT_S = 240  # the longest wait for it, per step
QUIET_POLL_S = 30


def wait_for_quiet() -> float:
    """The 1-minute load average once it is below QUIET_LOAD, or after QUIET_WAIT_S anyway."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while True:
        load = os.getloadavg()[0]
        if load < QUIET_LOAD or time.monotonic() >= deadline:
            return load
        print(f"load {load:.2f}: waiting for < {QUIET_LOAD}", file=sys.stderr, flush=True)
        time.sleep(QUIET_POLL_S)


def matmul_model(size: int) -> oir.Model:
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


def matmul_rows(gemm_gflops: float, cpu: str) -> list[str]:
    rows = []
    for size in MATMUL_SIZES:
        model = matmul_model(size)
        executable = compile_model(get_target("tvm"), model, TvmConfig(cache=False))
        extra = executable.pieces[0][1].record.extra
        schedule = extra["schedules"][0]
        session = executable.session(1)
        feeds = seeded_inputs(model)
        session.profile(feeds, runs=1)  # warm-up
        load = wait_for_quiet()
        tvm_s = sum(session.profile(feeds, runs=PROFILE_RUNS).values())
        np_s = numpy_seconds(feeds["a"], feeds["b"])
        flops = 2 * size**3
        tvm_g, np_g = flops / tvm_s / 1e9, flops / np_s / 1e9
        rows.append(
            f"| {size}³ | {cpu}, mcpu={extra['mcpu']['mcpu']} | {load:.2f} | {tvm_g:.0f} "
            f"| {100 * tvm_g / gemm_gflops:.0f} % | {np_g:.0f} "
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
    load = wait_for_quiet()
    spent = session.profile(feeds, runs=PROFILE_RUNS)
    by_op: dict[str, list[Any]] = defaultdict(lambda: [0, 0.0, set()])
    for function, seconds in spent.items():
        entry = by_op[leading_op(function)]
        entry[0] += 1
        entry[1] += seconds
        entry[2].add(rule_of.get(function, "?"))
    return {
        "compile_s": compile_s,
        "mcpu": piece["mcpu"],
        "load": load,
        "rules": piece["schedule_rules"],
        "total_ms": 1e3 * sum(spent.values()),
        "by_op": {op: (n, 1e3 * s, sorted(r)) for op, (n, s, r) in by_op.items()},
    }


def bench_command(model: str, target: str, round_: int) -> list[str]:
    return [
        *("runner", "bench", "--level", "model", "--model", model, "--target", target),
        *("--pipeline", ""),  # FP32 as exported: the workloads' default pipeline is O1
        *("--batch", ",".join(map(str, BATCHES)), "--scenario", "single-stream"),
        *("--min-duration", "2", "--min-queries", "10"),
        *("--out", str(RESULTS / f"{model}-{file_name_part(target)}-{round_ + 1}"), "--json"),
    ]


def run_bench(model: str, target: str, round_: int) -> dict[str, Any]:
    """The bench's JSON, with the load average it started at."""
    argv = bench_command(model, target, round_)
    load = wait_for_quiet()
    print(f"running (load {load:.2f}):", shlex.join(argv), file=sys.stderr, flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1]}")
    return {**json.loads(done.stdout), "load": load}


def best_batches(runs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per batch size, the round's result with the most samples per second."""
    best: dict[int, dict[str, Any]] = {}
    for run in runs:
        for batch in run["batches"]:
            size = batch["batch_size"]
            if size not in best or batch["qps"] > best[size]["qps"]:
                best[size] = batch
    return best


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
    cpu = detect_cpu().model
    with fresh_tvm_cache():
        matmul = matmul_rows(gemm_gflops, cpu)
        profiles = {(m, b): compile_and_profile(m, b) for m in MODELS for b in BATCHES}
        benches: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for model in MODELS:
            for round_ in range(BENCH_ROUNDS):
                for target in BENCH_TARGETS:
                    benches[(model, target)].append(run_bench(model, target, round_))
    mcpu = profiles[(MODELS[0], BATCHES[0])]["mcpu"]
    tvm_cpu = f"{cpu}, mcpu={mcpu['mcpu']}"
    lines = [
        "# TVM on the CPU: the project's schedule rules",
        "",
        f"Host: {host_device()}; numpy's measured FP32 GEMM rate {gemm_gflops:.0f} GFLOP/s. "
        "Generated by `python docs/benchmarks/tvm_cpu.py` (FP32, no passes beyond the tvm "
        "target's own lowering).",
        "",
        f"tvm compiled for LLVM's `mcpu={mcpu['mcpu']}` ({mcpu['source']}): {mcpu['why']}.",
        "",
        f"Timings were taken on a machine shared with other work: each step waited up to "
        f"{QUIET_WAIT_S} s for a 1-minute load average below {QUIET_LOAD}; the `load` columns "
        "give the load it started at (above that, the figures are noisier and lower).",
        "",
        "## matmul",
        "",
        "| size | CPU | load | tvm GFLOP/s | of numpy's GEMM rate | numpy GFLOP/s | tvm / numpy "
        "| schedule |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        *matmul,
        "",
        "## Models: tvm vs onnxruntime",
        "",
        'Single-stream, `--pipeline ""` on both, at least 2 s and 10 queries per batch size, '
        f"the best of {BENCH_ROUNDS} alternating rounds per target (the loads column lists the "
        "load each round started at); drift against the `reference` target on the seeded "
        "batch. `direct` is `tvm{winograd=false}`: every convolution direct, without the "
        "Winograd F(2x2, 3x3) rewrite of the 3x3 stride-1 ones. tvm's compile column is a "
        "cache hit of the library built cold below: what remains is the ONNX-level lowering "
        "(folding, copies of the weights), which runs on every compile.",
        "",
        "| model | batch | CPU (tvm's mcpu) | loads ort / tvm / direct | onnxruntime samples/s "
        "| tvm samples/s | tvm / onnxruntime | direct samples/s | direct / onnxruntime "
        "| tvm p99 ms | tvm compile s | tvm max abs drift | tvm cosine |",
        "| --- | ---: | --- | ---: " + "| ---: " * 9 + "|",
    ]
    for model in MODELS:
        ort, best_tvm, direct = (
            best_batches(benches[(model, "onnxruntime")]),
            best_batches(benches[(model, "tvm")]),
            best_batches(benches[(model, DIRECT)]),
        )
        loads = " / ".join(
            ", ".join(f"{run['load']:.2f}" for run in benches[(model, target)])
            for target in BENCH_TARGETS
        )
        for size, batch in best_tvm.items():
            outputs = (batch.get("drift") or {}).get("outputs", [])
            max_abs = max((d["max_abs"] for d in outputs), default=float("nan"))
            cosine = min((d["cosine"] for d in outputs), default=float("nan"))
            ratio = batch["qps"] / ort[size]["qps"]
            direct_qps = direct[size]["qps"]
            lines.append(
                f"| {model} | {size} | {tvm_cpu} | {loads} "
                f"| {ort[size]['qps']:.3g} | {batch['qps']:.3g} | {ratio:.2f} "
                f"| {direct_qps:.3g} | {direct_qps / ort[size]['qps']:.2f} "
                f"| {batch['latency_ms']['p99']:.1f} | {batch['compile_s']:.1f} "
                f"| {max_abs:.2g} | {cosine:.6f} |"
            )
    lines += ["", "## Cold compile and per-function profile", ""]
    for (model, batch), profile in profiles.items():
        rules = ", ".join(f"{rule} {n}" for rule, n in profile["rules"].items())
        lines += [
            f"### {model}, batch {batch} ({cpu}, mcpu={profile['mcpu']['mcpu']})",
            "",
            f"Cold compile {profile['compile_s']:.1f} s; functions by rule: {rules}. "
            f"Sum of function times {profile['total_ms']:.1f} ms per inference "
            f"(mean of {PROFILE_RUNS} runs, timed around each call the Relax VM makes; "
            f"load {profile['load']:.2f}).",
            "",
            "| op type | functions | ms | share | rule |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        ranked = sorted(profile["by_op"].items(), key=lambda item: -item[1][1])
        for op, (count, ms, rules_used) in ranked:
            share = 100 * ms / profile["total_ms"]
            lines.append(f"| {op} | {count} | {ms:.2f} | {share:.1f} % | {', '.join(rules_used)} |")
        lines.append("")
    commands = [
        shlex.join(bench_command(m, t, r))
        for m in MODELS
        for r in range(BENCH_ROUNDS)
        for t in BENCH_TARGETS
    ]
    lines += ["Bench commands:", "", "```bash", *commands, "```", ""]
    write_text_atomically(OUT, "\n".join(lines))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
