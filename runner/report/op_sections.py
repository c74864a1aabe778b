"""The report's sections on op results: each case on its device's roofline (colour per
provider, marker per op), the cases that move bytes but do no FLOPs against the memory roof
alone, and the spread of each case's timing samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runner.report.charts import Roof, RoofPoint, box_chart, roofline_chart
from runner.report.markup import color, figure, grid, legend, note, number, section, table
from runner.report.readings import distribution, label
from runner.report.svg import MARKERS
from runner.results.op import CaseResultRecord, CeilingRecord, OpResult, RooflineRecord

SYMBOLS = {"circle": "●", "square": "■", "diamond": "◆", "triangle": "▲"}


def case_name(case: CaseResultRecord) -> str:
    return f"{case.op} {case.dtype} {case.shape} · {case.provider}"


def short_case_name(case: CaseResultRecord, cases: Sequence[CaseResultRecord]) -> str:
    """Op and provider, with dtype and shape only where the result's cases differ in them."""
    shown = [case.op]
    if len({c.dtype for c in cases}) > 1:
        shown.append(case.dtype)
    if len({c.shape for c in cases}) > 1:
        shown.append(case.shape)
    return " ".join([*shown, "·", case.provider])


def _on_roofline(case: CaseResultRecord) -> bool:
    return (case.flops or 0) > 0 and case.gflops > 0 and case.intensity > 0


def _roofline_for(result: OpResult, device: str) -> RooflineRecord | None:
    rooflines = result.rooflines
    return next((r for k, r in rooflines.items() if device in (k, r.device)), None)


def roofline_section(ops: Sequence[OpResult]) -> str:
    """A roofline per op result and device, then the zero-FLOP cases."""
    providers = sorted({c.provider for r in ops for c in r.cases})
    names = sorted({c.op for r in ops for c in r.cases})
    colours = {p: color(i) for i, p in enumerate(providers)}
    shapes = {op: MARKERS[i % len(MARKERS)] for i, op in enumerate(names)}
    figures = []
    for result in ops:
        cases = [c for c in result.cases if _on_roofline(c)]
        for device in sorted({str(c.device) for c in cases}):
            on_device = [c for c in cases if str(c.device) == device]
            figures.append(_roofline_figure(result, device, on_device, colours, shapes))
    zero = [(r, c) for r in ops for c in r.cases if not _on_roofline(c)]
    if not figures and not zero:
        return ""
    body = grid(figures) + (_zero_flop_table(zero) if zero else "") + _not_measured(ops)
    intro = (
        "Attained GFLOP/s against arithmetic intensity; the roof is the lower of the memory "
        "bandwidth slope and the compute ceiling of the case's dtype."
    )
    return section("roofline", "Op-level roofline", intro, body)


def _roofline_figure(
    result: OpResult,
    device: str,
    cases: Sequence[CaseResultRecord],
    colours: Mapping[str, str],
    shapes: Mapping[str, str],
) -> str:
    roofline = _roofline_for(result, device)
    achievable = None if roofline is None else roofline.achievable
    roofs = ceiling_roofs({} if roofline is None else roofline.compute_gflops, achievable=False)
    roofs += ceiling_roofs({} if achievable is None else achievable.compute_gflops, achievable=True)
    bandwidth = _value(None if roofline is None else roofline.bandwidth_gbs)
    achievable_gbs = _value(None if achievable is None else achievable.bandwidth_gbs)
    points = [
        RoofPoint(c.intensity, c.gflops, colours[c.provider], shapes[c.op], _tip(c)) for c in cases
    ]
    title = f"{result.suite} on {device}"
    chart = roofline_chart(roofs, bandwidth, points, title, achievable_gbs)
    used = sorted({c.provider for c in cases})
    ops = sorted({c.op for c in cases})
    markers = ", ".join(f"{SYMBOLS[shapes[op]]} {op}" for op in ops)
    caption = legend((p, colours[p]) for p in used) + note(f"Markers: {markers}.")
    if roofline is None:
        caption += note("The result records no roofline for this device.")
    if any(roof.achievable for roof in roofs) or achievable_gbs:
        caption += note(
            "Solid: ceilings (upper bounds). Dashed: achievable, what a library measurably "
            "reaches on this device (numpy GEMM, STREAM triad); % of peak is against the "
            "ceilings."
        )
    return figure(title, chart, caption)


def _value(ceiling: CeilingRecord | None) -> float | None:
    return None if ceiling is None else ceiling.value


def ceiling_roofs(ceilings: Mapping[str, CeilingRecord], *, achievable: bool) -> list[Roof]:
    """One roof per distinct value, naming every dtype that shares it."""
    by_value: dict[float, list[str]] = {}
    for dtype, ceiling in ceilings.items():
        if ceiling.value > 0:
            by_value.setdefault(ceiling.value, []).append(dtype)
    return [Roof("/".join(sorted(d)), value, achievable) for value, d in sorted(by_value.items())]


def _tip(case: CaseResultRecord) -> str:
    fraction = case.peak_fraction
    peak = f"{number(100 * fraction)}% of peak" if fraction is not None else "no peak fraction"
    return (
        f"{case_name(case)}: {number(case.gflops)} GFLOP/s at "
        f"{number(case.intensity)} FLOP/byte; {peak} ({case.bound or 'no'} bound)"
    )


def _zero_flop_table(cases: Sequence[tuple[OpResult, CaseResultRecord]]) -> str:
    rows = []
    for result, case in cases:
        roofline = _roofline_for(result, str(case.device))
        bandwidth = _value(None if roofline is None else roofline.bandwidth_gbs)
        share = number(100 * case.gbps / bandwidth) if bandwidth else None
        rows.append([case_name(case), number(case.gbps), share])
    headers = ("case (no FLOPs: not on a FLOP roofline)", "GB/s", "% of memory bandwidth")
    return "<h3>Data movement only</h3>" + table(headers, rows, (1, 2))


def _not_measured(ops: Sequence[OpResult]) -> str:
    rows = [
        [r.suite, f"{e.op} · {e.provider}", kind, e.reason]
        for r in ops
        for kind, entries in (("unsupported", r.unsupported), ("failed", r.failed))
        for e in entries
    ]
    if not rows:
        return ""
    return "<h3>Not measured</h3>" + table(("suite", "case", "why", "reason"), rows)


def op_latency_figures(ops: Sequence[OpResult]) -> list[str]:
    """A box per case from its raw timing samples."""
    figures = []
    for result in ops:
        cases = result.cases
        boxes = [distribution(short_case_name(c, cases), c.samples_us) for c in cases]
        if not boxes:
            continue
        name = label(result)
        chart = box_chart(boxes, color(0), "µs", f"{name}: time per call")
        figures.append(figure(f"{name}: time per call", chart, note(_noise_note(result))))
    return figures


def _noise_note(result: OpResult) -> str:
    noisy = sum(1 for c in result.cases if c.noisy)
    return f"{len(result.cases)} cases, {noisy} marked noisy by the timing policy."
