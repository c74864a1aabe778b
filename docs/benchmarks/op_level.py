"""Op-level figures of this machine, behind docs/benchmarks/op-level.md.

    python docs/benchmarks/op_level.py

Runs `runner bench --level op --suite cpu-headline --flush-cache` (FP32 GEMM 2048³ from every
provider, int8 GEMM 2048³ from onnxruntime, the row ops on a 64 MiB tensor from every provider)
and writes the page from its result document, with the expectations of the op benchmarks
checked on the figures: the numba GEMM within 2x of numpy (OpenBLAS), the fused numba softmax
and layer_norm at least as fast as numpy's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from ir.files import write_text_atomically
from runner.results.files import read_result

OUT = Path(__file__).with_name("op-level.md")
RESULTS = Path("bench-results/op-cpu-headline")
COMMAND = [
    "runner",
    "bench",
    "--level",
    "op",
    "--suite",
    "cpu-headline",
    "--flush-cache",
    "--max-time",
    "10",
    "--out",
    str(RESULTS),
]
GEMM = "2048x2048x2048"
ROW_SHAPE = "4096x4096"
FUSED = ("softmax", "layer_norm")


def _cases(doc: dict[str, Any], op: str, dtype: str, shape: str) -> dict[str, dict[str, Any]]:
    return {
        c["provider"]: c
        for c in doc["cases"]
        if (c["op"], c["dtype"], c["shape"]) == (op, dtype, shape)
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _noisy(case: dict[str, Any]) -> str:
    return " (noisy)" if case["noisy"] else ""


def _ceilings(doc: dict[str, Any]) -> list[str]:
    """The upper bounds the percentages are taken against, then what libraries achieve."""
    roof = doc["rooflines"]["host"]
    lines = [f"Device: {roof['device']}.", ""]
    for dtype, ceiling in roof["compute_gflops"].items():
        unit = "GOP/s" if dtype.startswith("int") else "GFLOP/s"
        lines.append(f"- {dtype} ceiling: {ceiling['value']:.0f} {unit} ({ceiling['source']})")
    bandwidth = roof["bandwidth_gbs"]
    lines.append(f"- memory ceiling: {bandwidth['value']:.1f} GB/s ({bandwidth['source']})")
    achievable = roof.get("achievable") or {}
    for dtype, rate in (achievable.get("compute_gflops") or {}).items():
        lines.append(f"- {dtype} achievable: {rate['value']:.0f} GFLOP/s ({rate['source']})")
    if achievable.get("bandwidth_gbs"):
        rate = achievable["bandwidth_gbs"]
        lines.append(f"- memory achievable: {rate['value']:.1f} GB/s ({rate['source']})")
    return lines


def _gemm_table(doc: dict[str, Any]) -> tuple[list[str], float | None]:
    cases = _cases(doc, "gemm", "fp32", GEMM)
    numpy = cases.get("numpy")
    lines = [
        "| provider | median ms | GFLOP/s | % of the FP32 ceiling | vs numpy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for provider, case in cases.items():
        ratio = case["gflops"] / numpy["gflops"] if numpy else None
        lines.append(
            f"| {provider} | {case['latency_us']['median'] / 1e3:.1f}{_noisy(case)} | "
            f"{case['gflops']:.0f} | {_percent(case['peak_fraction'])} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    numba = cases.get("numba")
    return lines, (numba["gflops"] / numpy["gflops"] if numba and numpy else None)


def _int8_table(doc: dict[str, Any]) -> list[str]:
    fp32 = _cases(doc, "gemm", "fp32", GEMM).get("numpy")
    lines = [
        "| provider | median ms | GOP/s | % of the int8 ceiling | vs numpy FP32 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for provider, case in _cases(doc, "gemm", "int8", GEMM).items():
        ratio = f"{case['gflops'] / fp32['gflops']:.2f}x" if fp32 else "-"
        lines.append(
            f"| {provider} | {case['latency_us']['median'] / 1e3:.1f}{_noisy(case)} | "
            f"{case['gflops']:.0f} | {_percent(case['peak_fraction'])} | {ratio} |"
        )
    return lines


def _row_table(doc: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    row_cases = [c for c in doc["cases"] if c["shape"] == ROW_SHAPE]
    ops = list(dict.fromkeys(c["op"] for c in row_cases))
    providers = list(dict.fromkeys(c["provider"] for c in row_cases))
    header = " | ".join(f"{p} GB/s (% of bw)" for p in providers)
    lines = [f"| op | {header} | numba / numpy |", "| --- |" + " ---: |" * (len(providers) + 1)]
    speedups: dict[str, float] = {}
    for op in ops:
        cases = _cases(doc, op, "fp32", ROW_SHAPE)
        cells = [
            f"{cases[p]['gbps']:.1f} ({_percent(cases[p]['peak_fraction'])}){_noisy(cases[p])}"
            if p in cases
            else "-"
            for p in providers
        ]
        if "numba" in cases and "numpy" in cases:
            speedups[op] = (
                cases["numpy"]["latency_us"]["median"] / (cases["numba"]["latency_us"]["median"])
            )
        speedup = f"{speedups[op]:.2f}x" if op in speedups else "-"
        lines.append(f"| {op} | {' | '.join(cells)} | {speedup} |")
    return lines, speedups


def _unsupported(doc: dict[str, Any]) -> list[str]:
    return [
        f"- {u['op']}/{u['dtype']} on {u['provider']}: {u['reason']}" for u in doc["unsupported"]
    ]


def _verdict(name: str, met: bool | None, detail: str) -> str:
    mark = "not measured" if met is None else ("met" if met else "NOT met")
    return f"- {name}: **{mark}** ({detail})"


def page(doc: dict[str, Any], load: tuple[float, float] | None = None) -> str:
    """The page; `load` is the 1-minute load average before and after the run, since other
    work on a shared machine lowers every figure."""
    gemm, numba_ratio = _gemm_table(doc)
    rows, speedups = _row_table(doc)
    expectations = [
        _verdict(
            "numba GEMM within 2x of numpy at 2048³",
            None if numba_ratio is None else numba_ratio >= 0.5,
            "numba / numpy = " + ("-" if numba_ratio is None else f"{numba_ratio:.2f}"),
        ),
        *(
            _verdict(
                f"fused numba {op} at least as fast as numpy",
                None if op not in speedups else speedups[op] >= 1.0,
                f"speed-up {speedups[op]:.2f}x" if op in speedups else "-",
            )
            for op in FUSED
        ),
    ]
    failed = [f"- {f['op']}/{f['dtype']} on {f['provider']}: {f['reason']}" for f in doc["failed"]]
    sections = [
        "# Op-level figures on this machine",
        "",
        "Generated by `python docs/benchmarks/op_level.py`, which runs",
        "",
        f"    {shlex.join(doc['environment']['command'])}",
        "",
        f"on {doc['created']} ({doc['seconds']:.0f} s). Raw samples and every field: "
        f"`{RESULTS}/result.json`. Timing: adaptive, warm-up {doc['policy']['warmup_s']} s, at "
        f"least {doc['policy']['min_samples']} samples and {doc['policy']['min_time_s']} s, "
        f"noise target {doc['policy']['target_noise']:.0%} (IQR/median), at most "
        f"{doc['policy']['max_time_s']} s per case ([methodology](../methodology.md)).",
        *(
            [
                "",
                f"1-minute load average {load[0]:.2f} before the run and {load[1]:.2f} after, "
                f"on {doc['environment']['threads']['cpu_count']} CPUs: above zero, other "
                "processes shared the cores and the figures are lower than an idle machine's.",
            ]
            if load
            else []
        ),
        "",
        "## Ceilings",
        "",
        *_ceilings(doc),
        "",
        f"## FP32 GEMM {GEMM}",
        "",
        *gemm,
        "",
        f"## int8 GEMM {GEMM} (int32 result)",
        "",
        *_int8_table(doc),
        "",
        f"## Row ops on {ROW_SHAPE} fp32 (64 MiB)",
        "",
        "Memory-bound, with the caches flushed before every sample: GB/s counts each tensor read",
        "once and written once, and the percentage is of the memory ceiling.",
        "",
        *rows,
        "",
        "## Expectations",
        "",
        *expectations,
        "",
        "## Not run",
        "",
        *(_unsupported(doc) or ["- none"]),
        *(["", "## Failed", "", *failed] if failed else []),
        "",
    ]
    return "\n".join(sections)


def main() -> int:
    before = os.getloadavg()[0]
    completed = subprocess.run(COMMAND, check=False)
    after = os.getloadavg()[0]
    if completed.returncode != 0:
        print(f"op_level: {shlex.join(COMMAND)} exited {completed.returncode}", file=sys.stderr)
    doc = read_result(RESULTS).to_json()
    write_text_atomically(OUT, page(doc, (before, after)))
    print(f"wrote {OUT}")
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
