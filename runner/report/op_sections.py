"""The report's sections on op results: each case on its device's roofline (colour per
provider, marker per op), the cases that move bytes but do no FLOPs against the memory roof
alone, and the spread of each case's timing samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner.report.charts import Roof, RoofPoint, box_chart, roofline_chart
from runner.report.markup import color, figure, grid, legend, note, number, section, table
from runner.report.readings import Document, distribution, label
from runner.report.svg import MARKERS

SYMBOLS = {"circle": "●", "square": "■", "diamond": "◆", "triangle": "▲"}


def case_name(case: Mapping[str, Any]) -> str:
    return f"{case['op']} {case['dtype']} {case['shape']} · {case['provider']}"


def short_case_name(case: Mapping[str, Any], cases: Sequence[Mapping[str, Any]]) -> str:
    """Op and provider, with dtype and shape only where the document's cases differ in them."""
    varying = [k for k in ("dtype", "shape") if len({c[k] for c in cases}) > 1]
    return " ".join([case["op"], *(case[k] for k in varying), "·", case["provider"]])


def _on_roofline(case: Mapping[str, Any]) -> bool:
    return case.get("flops", 0) > 0 and case["gflops"] > 0 and case["intensity"] > 0


def _roofline_for(document: Document, device: str) -> Mapping[str, Any] | None:
    rooflines = document["rooflines"]
    return next((r for k, r in rooflines.items() if device in (k, r.get("device"))), None)


def roofline_section(ops: Sequence[Document]) -> str:
    """A roofline per op result and device, then the zero-FLOP cases."""
    providers = sorted({c["provider"] for d in ops for c in d["cases"]})
    names = sorted({c["op"] for d in ops for c in d["cases"]})
    colours = {p: color(i) for i, p in enumerate(providers)}
    shapes = {op: MARKERS[i % len(MARKERS)] for i, op in enumerate(names)}
    figures = []
    for document in ops:
        cases = [c for c in document["cases"] if _on_roofline(c)]
        for device in sorted({str(c.get("device")) for c in cases}):
            on_device = [c for c in cases if str(c.get("device")) == device]
            figures.append(_roofline_figure(document, device, on_device, colours, shapes))
    zero = [(d, c) for d in ops for c in d["cases"] if not _on_roofline(c)]
    if not figures and not zero:
        return ""
    body = grid(figures) + (_zero_flop_table(zero) if zero else "") + _not_measured(ops)
    intro = (
        "Attained GFLOP/s against arithmetic intensity; the roof is the lower of the memory "
        "bandwidth slope and the compute ceiling of the case's dtype."
    )
    return section("roofline", "Op-level roofline", intro, body)


def _roofline_figure(
    document: Document,
    device: str,
    cases: Sequence[Mapping[str, Any]],
    colours: Mapping[str, str],
    shapes: Mapping[str, str],
) -> str:
    roofline = _roofline_for(document, device) or {}
    achievable = roofline.get("achievable") or {}
    roofs = _roofs(roofline.get("compute_gflops") or {}, achievable=False)
    roofs += _roofs(achievable.get("compute_gflops") or {}, achievable=True)
    bandwidth = (roofline.get("bandwidth_gbs") or {}).get("value")
    achievable_gbs = (achievable.get("bandwidth_gbs") or {}).get("value")
    points = [
        RoofPoint(c["intensity"], c["gflops"], colours[c["provider"]], shapes[c["op"]], _tip(c))
        for c in cases
    ]
    title = f"{document['suite']} on {device}"
    chart = roofline_chart(roofs, bandwidth, points, title, achievable_gbs)
    used = sorted({c["provider"] for c in cases})
    ops = sorted({c["op"] for c in cases})
    markers = ", ".join(f"{SYMBOLS[shapes[op]]} {op}" for op in ops)
    caption = legend((p, colours[p]) for p in used) + note(f"Markers: {markers}.")
    if not roofline:
        caption += note("The result records no roofline for this device.")
    if any(roof.achievable for roof in roofs) or achievable_gbs:
        caption += note(
            "Solid: ceilings (upper bounds). Dashed: achievable, what a library measurably "
            "reaches on this device (numpy GEMM, STREAM triad); % of peak is against the "
            "ceilings."
        )
    return figure(title, chart, caption)


def _roofs(ceilings: Mapping[str, Any], *, achievable: bool) -> list[Roof]:
    """One roof per distinct value, naming every dtype that shares it."""
    by_value: dict[float, list[str]] = {}
    for dtype, ceiling in ceilings.items():
        if ceiling and (ceiling.get("value") or 0) > 0:
            by_value.setdefault(ceiling["value"], []).append(dtype)
    return [Roof("/".join(sorted(d)), value, achievable) for value, d in sorted(by_value.items())]


def _tip(case: Mapping[str, Any]) -> str:
    fraction = case.get("peak_fraction")
    peak = f"{number(100 * fraction)}% of peak" if fraction is not None else "no peak fraction"
    return (
        f"{case_name(case)}: {number(case['gflops'])} GFLOP/s at "
        f"{number(case['intensity'])} FLOP/byte; {peak} ({case.get('bound') or 'no'} bound)"
    )


def _zero_flop_table(cases: Sequence[tuple[Document, Mapping[str, Any]]]) -> str:
    rows = []
    for document, case in cases:
        roofline = _roofline_for(document, str(case.get("device"))) or {}
        bandwidth = (roofline.get("bandwidth_gbs") or {}).get("value")
        share = number(100 * case["gbps"] / bandwidth) if bandwidth else None
        rows.append([case_name(case), number(case["gbps"]), share])
    headers = ("case (no FLOPs: not on a FLOP roofline)", "GB/s", "% of memory bandwidth")
    return "<h3>Data movement only</h3>" + table(headers, rows, (1, 2))


def _not_measured(ops: Sequence[Document]) -> str:
    rows = [
        [d["suite"], f"{e['op']} · {e['provider']}", kind, e["reason"]]
        for d in ops
        for kind in ("unsupported", "failed")
        for e in d[kind]
    ]
    if not rows:
        return ""
    return "<h3>Not measured</h3>" + table(("suite", "case", "why", "reason"), rows)


def op_latency_figures(ops: Sequence[Document]) -> list[str]:
    """A box per case from its raw timing samples."""
    figures = []
    for document in ops:
        cases = document["cases"]
        boxes = [distribution(short_case_name(c, cases), c["samples_us"]) for c in cases]
        if not boxes:
            continue
        name = label(document)
        chart = box_chart(boxes, color(0), "µs", f"{name}: time per call")
        figures.append(figure(f"{name}: time per call", chart, note(_noise_note(document))))
    return figures


def _noise_note(document: Document) -> str:
    noisy = sum(1 for c in document["cases"] if c["noisy"])
    return f"{len(document['cases'])} cases, {noisy} marked noisy by the timing policy."
