"""Per-layer profiles of ResNet-50 and BERT-base on each target, behind docs/benchmarks/profiles.md.

    python docs/benchmarks/profiles.py [--resume]

`runner profile ... --json` at batch 1, `RUNS` profiled runs after a warm-up, on onnxruntime, tvm
and openvino, FP32 (the model as exported) and INT8 (the `int8` pipeline). For each run the page
shows the ten slowest layers in the IR's node ids, the op-type and pass rollups, the layers' sum
against the end-to-end latency, the time no IR node accounts for and the sentence of
runner/report/profile_readings.py on what limits the run; a closing section sets the targets
side by side on the same model. Every sentence on the page is generated from the documents, so
it cannot drift from the figures. A target that declines a run (a pipeline it cannot take) gets
its one-line reason on the page instead of figures.

The machine may be shared: before each run the script waits for a quiet load average
(tvm_cpu.py's wait) and the page gives the load each run started at. Results stay under
bench-results/docs/profiles/, so an interrupted run continues with --resume.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tvm_cpu import QUIET_LOAD, QUIET_WAIT_S, wait_for_quiet

from ir.files import write_text_atomically
from runner.report.profile_compare import compare_profiles
from runner.report.profile_readings import (
    limit_sentence,
    limiting_group,
    sum_check_line,
    unmapped_line,
)
from runner.report.profile_terminal import node_list, roofline_text
from runner.results.files import RESULT_FILE, read_result, result_from_json
from runner.results.profile import ProfileGroup, ProfileLayer, ProfileResult
from targets.device import host_device
from targets.hardware.host import detect_cpu

MODELS = ("resnet50", "bert-base")
TARGETS = ("onnxruntime", "tvm", "openvino")
PIPELINES = {"FP32": "", "INT8": "int8"}
RUNS = 10  # profiled runs per profile: the medians the page shows
TOP = 10
# A profile whose time maps to IR nodes less than this is left out of the comparison: its
# rollups describe too little of the model to say where the target loses time.
MAPPED_FOR_COMPARISON = 0.5
RESULTS = Path("bench-results/docs/profiles")
OUT = Path(__file__).with_name("profiles.md")


@dataclass(frozen=True)
class Profile:
    """One `runner profile` run: its document, or the one line the runner refused it with."""

    model: str
    target: str
    label: str  # a PIPELINES key
    command: str
    load: float | None  # the 1-minute load average it started at; None when resumed
    result: ProfileResult | None
    error: str | None

    @property
    def title(self) -> str:
        return f"{self.model} on {self.target}, {self.label}"


def command(model: str, target: str, pipeline: str, out: Path) -> list[str]:
    return [
        *("runner", "profile", model, "--target", target),
        *(("--pipeline", pipeline) if pipeline else ()),
        *("--batch", "1", "--runs", str(RUNS), "--top", str(TOP), "--out", str(out), "--json"),
    ]


def run_profile(model: str, target: str, label: str, resume: bool) -> Profile:
    out = RESULTS / f"{model}-{target}-{label.lower()}"
    argv = command(model, target, PIPELINES[label], out)
    shown = shlex.join(argv)
    if resume and (out / RESULT_FILE).exists():
        result = read_result(out)
        assert isinstance(result, ProfileResult), out
        return Profile(model, target, label, shown, None, result, None)
    load = wait_for_quiet()
    print(f"running (load {load:.2f}): {shown}", file=sys.stderr, flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        errors = [line for line in lines if line.startswith("runner: error:")]
        return Profile(model, target, label, shown, load, None, (errors or lines)[-1])
    result = result_from_json(json.loads(done.stdout), shown)
    assert isinstance(result, ProfileResult), shown
    return Profile(model, target, label, shown, load, result, None)


# --- one profile ----------------------------------------------------------------------------


def _percent(fraction: float | None) -> str:
    """Three significant figures, without an exponent past 999%."""
    if fraction is None:
        return "-"
    return f"{100 * fraction:.3g}%" if fraction < 9.995 else f"{100 * fraction:.0f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def ran_in(layer: ProfileLayer) -> str:
    """The precision the target's profiler reports the layer ran in (OpenVINO's runtime
    precision), else the type its IR nodes compute in, marked "(IR)"."""
    reported = layer.detail.get("precision")
    if reported:
        return reported
    return "unknown" if layer.dtype is None else f"{layer.dtype} (IR)"


def layer_rows(result: ProfileResult) -> list[str]:
    rows = [
        "| # | layer | IR nodes | op types | ms | ± ms | share | bound | % roofline | lost ms "
        "| ran in |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for rank, layer in enumerate(result.layers[:TOP], start=1):
        rows.append(
            f"| {rank} | `{layer.name}` | {node_list(layer.nodes)} "
            f"| {'+'.join(layer.op_types) or '-'} | {layer.time_ms:.3f} | {layer.spread_ms:.3f} "
            f"| {layer.share:.1%} | {layer.bound or '-'} | {_percent(layer.roofline_fraction)} "
            f"| {_ms(layer.lost_ms)} | {ran_in(layer)} |"
        )
    return rows


def group_rows(groups: Sequence[ProfileGroup], column: str) -> list[str]:
    rows = [
        f"| {column} | layers | ms | share | % roofline | lost ms | bound | judged as |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for group in groups:
        rows.append(
            f"| {group.key} | {group.layers} | {group.time_ms:.3f} | {group.share:.1%} "
            f"| {_percent(group.roofline_fraction)} | {_ms(group.lost_ms)} "
            f"| {group.bound or '-'} | {'/'.join(group.dtypes) or '-'} |"
        )
    return rows


def precision_line(result: ProfileResult) -> str:
    """The layers by the precision they ran in: "bf16 53 layers (97.5%), f32 2 (0.1%)"."""
    layers: Counter[str] = Counter()
    time: Counter[str] = Counter()
    for layer in result.layers:
        layers[ran_in(layer)] += 1
        time[ran_in(layer)] += layer.time_ms
    shares = [
        f"{kind} {layers[kind]} layer{'s' if layers[kind] != 1 else ''} "
        f"({time[kind] / result.total_ms:.1%})"
        for kind, _ in time.most_common()
    ]
    return "ran in: " + ", ".join(shares)


def above_roofline_line(result: ProfileResult) -> str | None:
    """Layers measured faster than their roofline allows, if any, by bound, with the highest
    fraction of each: a memory-bound one keeps its data in the cache, which the DRAM ceiling
    does not model; a compute-bound one far above its ceiling was given the wrong nodes."""
    above = [layer for layer in result.layers if (layer.roofline_fraction or 0) > 1]
    if not above:
        return None
    parts = []
    for bound, count in Counter(str(layer.bound) for layer in above).most_common():
        highest = max(layer.roofline_fraction or 0 for layer in above if layer.bound == bound)
        parts.append(f"{count} {bound}-bound, up to {_percent(highest)}")
    return (
        f"above their roofline: {len(above)} layer{'s' if len(above) != 1 else ''} "
        f"({'; '.join(parts)}), {sum(layer.time_ms for layer in above):.3g} ms"
    )


def profile_section(profile: Profile) -> list[str]:
    lines = [f"### {profile.title}", "", f"`{profile.command}`", ""]
    result = profile.result
    if result is None:
        return [*lines, f"Declined: {profile.error}", ""]
    load = "" if profile.load is None else f"; started at load {profile.load:.2f}"
    facts = [
        f"{result.target_info.name} {result.target_info.version}, profiled by "
        f"{' + '.join(dict.fromkeys(result.profilers))}; {len(result.layers)} layers{load}",
        sum_check_line(result),
        unmapped_line(result),
        precision_line(result),
        above_roofline_line(result),
    ]
    by_pass = "; ".join(
        f"{group.key} {group.layers} layer{'s' if group.layers != 1 else ''} "
        f"{group.time_ms:.3g} ms ({group.share:.1%})"
        for group in result.by_pass
    )
    return [
        *lines,
        *(f"- {fact}" for fact in facts if fact),
        f"- by pass: {by_pass}",
        "",
        f"**What limits it:** {limit_sentence(result)}.",
        "",
        *layer_rows(result),
        "",
        *group_rows(result.by_op_type, "op types"),
        "",
    ]


# --- the targets side by side ---------------------------------------------------------------


def mapped_share(result: ProfileResult) -> float:
    return 1 - result.unmapped_ms / result.total_ms if result.total_ms > 0 else 0.0


def comparison_rows(profiles: Sequence[Profile]) -> list[str]:
    rows = [
        "| model | pipeline | target | end to end ms | layers ms | mapped | % roofline "
        "| lost ms | loses most in | its lost ms | its % roofline |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for profile in profiles:
        where = f"| {profile.model} | {profile.label} | {profile.target}"
        result = profile.result
        if result is None:
            rows.append(f"{where} | declined | - | - | - | - | - | - | - |")
            continue
        timing = f"{where} | {result.end_to_end_ms:.3g} | {result.total_ms:.3g} "
        timing += f"| {mapped_share(result):.0%}"
        if mapped_share(result) < MAPPED_FOR_COMPARISON:
            rows.append(f"{timing} | - | - | - | - | - |")
            continue
        judged = [layer for layer in result.layers if layer.roofline_ms is not None]
        judged_ms = sum(layer.time_ms for layer in judged)
        roof_ms = sum(layer.roofline_ms or 0.0 for layer in judged)
        group = limiting_group(result)
        rows.append(
            f"{timing} | {_percent(roof_ms / judged_ms if judged_ms > 0 else None)} "
            f"| {_ms(judged_ms - roof_ms if judged else None)} "
            f"| {group.key if group else '-'} | {_ms(group.lost_ms if group else None)} "
            f"| {_percent(group.roofline_fraction if group else None)} |"
        )
    return rows


def comparison_lines(model: str, label: str, profiles: Sequence[Profile]) -> list[str]:
    """What the figures of one model and pipeline say across targets: the end-to-end order,
    and, against the fastest, the group of layers (matched by original node ids) whose time
    differs most."""
    done = sorted(
        ((p.target, p.result) for p in profiles if p.result is not None),
        key=lambda pair: pair[1].end_to_end_ms,
    )
    lines = []
    if len(done) >= 2:
        fastest = done[0][1].end_to_end_ms
        ranked = ", ".join(
            f"{target} {result.end_to_end_ms:.3g} ms"
            + (f" ({result.end_to_end_ms / fastest:.2f}x)" if index else "")
            for index, (target, result) in enumerate(done)
        )
        lines.append(f"- {model}, {label}: end to end, fastest first: {ranked}.")
    usable = [(t, r) for t, r in done if mapped_share(r) >= MAPPED_FOR_COMPARISON]
    for target, result in done:
        if (target, result) not in usable:
            lines.append(
                f"- {model}, {label}: {target} is left out of the layer comparison: only "
                f"{mapped_share(result):.0%} of its time maps to IR nodes."
            )
    lines += [
        f"- {model}, {label}: {_largest_difference(usable[0], other)}" for other in usable[1:]
    ]
    return lines


def _largest_difference(base: tuple[str, ProfileResult], other: tuple[str, ProfileResult]) -> str:
    (a_name, a), (b_name, b) = base, other
    comparison = compare_profiles(a, b, a_name, b_name)
    if not comparison.matched:
        return f"no layer of {b_name} shares an original node with {a_name}'s."
    group = comparison.matched[0]
    a_ms = sum(g.a_ms for g in comparison.matched)
    b_ms = sum(g.b_ms for g in comparison.matched)
    return (
        f"matched by original node ids ({len(comparison.matched)} groups), {b_name}'s layers "
        f"take {b_ms:.3g} ms where {a_name}'s take {a_ms:.3g} ms; the largest difference is "
        f"{group.op_types} ({node_list(group.original_nodes)}): {group.b_ms:.3g} ms on "
        f"{b_name} against {group.a_ms:.3g} ms."
    )


# --- the page -------------------------------------------------------------------------------


def versions(profiles: Sequence[Profile]) -> str:
    found = {p.result.target_info.name: p.result.target_info.version for p in profiles if p.result}
    return ", ".join(f"{name} {version}" for name, version in sorted(found.items()))


def page(profiles: Sequence[Profile]) -> str:
    cpu = detect_cpu()  # its ISA flags say what the kernels can use: bf16, VNNI int8, AMX
    first = next((p.result for p in profiles if p.result), None)
    ceilings = "no profile ran" if first is None else roofline_text(first)
    cache = (
        ""
        if first is None or not first.roofline.cache_bytes
        else (f" (the last-level cache holds {first.roofline.cache_bytes / 2**20:.0f} MiB)")
    )
    sections = [line for profile in profiles for line in profile_section(profile)]
    readings = [
        line
        for model in MODELS
        for label in PIPELINES
        for line in comparison_lines(
            model, label, [p for p in profiles if p.model == model and p.label == label]
        )
    ]
    return "\n".join(
        [
            "# Per-layer profiles",
            "",
            f"Host: {host_device()} (family {cpu.family}, model {cpu.model_number}; ISA flags: "
            f"{', '.join(cpu.flags) or 'none of interest'}). Targets: {versions(profiles)}. "
            "Generated by `python docs/benchmarks/profiles.py`: `runner profile` at batch 1, "
            f"{RUNS} profiled runs after a warm-up, FP32 (the model as exported) and INT8 (the "
            "`int8` pipeline, bound to each target). The zoo's models carry seeded random "
            "weights. The machine may be shared: before each run the script waited up to "
            f"{QUIET_WAIT_S} s for a 1-minute load average below {QUIET_LOAD}.",
            "",
            f"Roofline ({ceilings}): each layer's FLOPs and the bytes crossing its boundary "
            "(op table, on the model as compiled) against the compute ceiling of the precision "
            "it ran in and the memory bandwidth; `bound` is the larger term, `% roofline` the "
            "time the roofline allows over the measured median, `lost ms` the difference. "
            "`ran in`: OpenVINO's runtime precision of the layer (it runs a float32 model in "
            "bf16 where the CPU has bf16 instructions), else the type the layer's IR nodes "
            "compute in, marked (IR). The bandwidth is DRAM's: a memory-bound layer whose data "
            f"stays in the cache{cache} can run above 100%; a compute-bound layer cannot run "
            "much above it, so one that does was credited with another layer's nodes (or "
            "time) by the mapping of the profiler's names. The IR nodes are the ids after the "
            "pipeline (`n12`); a layer the profiler names but no IR node accounts for (a "
            "layout reorder the runtime inserted) keeps its time as unmapped. Every sentence "
            "below (the sum check, the unmapped time, what limits the run, the comparison) is "
            "generated from the profile documents.",
            "",
            "## Targets side by side",
            "",
            "`mapped`: the share of the layers' time that maps to IR nodes; `% roofline` and "
            "`lost ms` over the layers that have FLOPs and bytes (left out below "
            f"{MAPPED_FOR_COMPARISON:.0%} mapped); `loses most in`: the op-type group that loses "
            "the most time against its roofline.",
            "",
            *comparison_rows(profiles),
            "",
            *readings,
            "",
            "## Profiles",
            "",
            *sections,
            "## Commands",
            "",
            "\n".join(["```bash", *(p.command for p in profiles), "```"]),
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    profiles = [
        run_profile(model, target, label, args.resume)
        for model in MODELS
        for label in PIPELINES
        for target in TARGETS
    ]
    write_text_atomically(OUT, page(profiles))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
