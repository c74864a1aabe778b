"""The report's chart types, each one `<svg>` from plain records: lines over batch sizes, box
plots of latency samples, grouped and horizontal bars, and the roofline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from runner.report.markup import number
from runner.report.svg import (
    Frame,
    Scale,
    chart,
    line,
    linear_domain,
    log_domain,
    marker,
    numeric_x_ticks,
    polyline,
    rect,
    short,
    text,
    title,
    x_axis,
    x_grid,
    y_axis,
)

LOG_SPAN = 30  # a y range wider than this many times is drawn on a log scale


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    tip: str
    valid: bool = True


@dataclass(frozen=True)
class Series:
    label: str
    color: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Distribution:
    """A sample's spread; from raw samples every field is set, from summary statistics only
    min, median, p90, p99 and max (`raw` False)."""

    label: str
    minimum: float
    median: float
    maximum: float
    p10: float | None
    p25: float | None
    p75: float | None
    p90: float
    p99: float | None
    count: int
    raw: bool

    def tip(self, unit: str) -> str:
        named = [
            ("min", self.minimum),
            ("p10", self.p10),
            ("p25", self.p25),
            ("median", self.median),
            ("p75", self.p75),
            ("p90", self.p90),
            ("p99", self.p99),
            ("max", self.maximum),
        ]
        figures = ", ".join(f"{name} {number(v)}" for name, v in named if v is not None)
        origin = f"{self.count} samples" if self.raw else "summary statistics only"
        return f"{self.label}: {figures} {unit} ({origin})"


@dataclass(frozen=True)
class BarGroup:
    """One series of a grouped bar chart: a value and a tooltip per category."""

    label: str
    color: str
    values: tuple[float, ...]
    tips: tuple[str, ...]


@dataclass(frozen=True)
class RoofPoint:
    intensity: float
    gflops: float
    color: str
    shape: str
    tip: str


def y_scale_for(frame: Frame, values: Sequence[float]) -> Scale:
    """Linear from zero, or log when the values span more than LOG_SPAN times."""
    positive = [v for v in values if v > 0]
    wide = len(positive) == len(values) and positive and max(positive) > LOG_SPAN * min(positive)
    if wide:
        return frame.y_scale(*log_domain(positive), log=True)
    return frame.y_scale(*linear_domain(values))


def axis_title(label: str, scale: Scale) -> str:
    return f"{label}, log scale" if scale.log else label


def line_chart(series: Sequence[Series], x_label: str, y_label: str, label: str) -> str:
    """Series over a base-2 x axis (batch sizes) ticked at the x values present; hollow
    points are invalid runs."""
    frame = Frame()
    xs = sorted({p.x for s in series for p in s.points})
    x = frame.x_scale(xs[0] / 1.5, xs[-1] * 1.5, log=True)
    y = y_scale_for(frame, [p.y for s in series for p in s.points])
    marks = [
        y_axis(frame, y, axis_title(y_label, y)),
        x_axis(frame, [(x(v), short(v)) for v in xs], x_label),
    ]
    for one in series:
        coords = [(x(p.x), y(p.y)) for p in one.points]
        marks.append(polyline(coords, one.color))
        marks.extend(
            marker("circle", cx, cy, one.color, p.tip, hollow=not p.valid)
            for (cx, cy), p in zip(coords, one.points, strict=True)
        )
    return chart(frame, label, marks)


def _category_centres(frame: Frame, count: int) -> list[float]:
    step = (frame.x1 - frame.x0) / count
    return [round(frame.x0 + step * (i + 0.5), 1) for i in range(count)]


def box_chart(boxes: Sequence[Distribution], fill: str, unit: str, label: str) -> str:
    """One box per sample on a log y axis: whiskers min to max, a bar p10 to p90, the box p25
    to p75, a line at the median; summary-only samples get ticks at p90 and p99 instead."""
    rotate = max(len(b.label) for b in boxes) > 10 or len(boxes) > 8
    frame = Frame(bottom=_label_room([b.label for b in boxes], rotate))
    y = frame.y_scale(*log_domain([v for b in boxes for v in (b.minimum, b.maximum)]), log=True)
    centres = _category_centres(frame, len(boxes))
    half = min(18.0, (frame.x1 - frame.x0) / len(boxes) / 3)
    marks = [y_axis(frame, y, f"latency ({unit}), log scale")]
    for cx, box in zip(centres, boxes, strict=True):
        marks.append(f'<g class="box">{title(box.tip(unit))}')
        marks.append(line(cx, y(box.minimum), cx, y(box.maximum), "whisker", fill))
        for end in (box.minimum, box.maximum):
            marks.append(line(cx - half / 2, y(end), cx + half / 2, y(end), "whisker", fill))
        if box.p10 is not None:
            marks.append(line(cx, y(box.p10), cx, y(box.p90), "inner", fill))
        if box.p25 is not None and box.p75 is not None:
            top, bottom = y(box.p75), y(box.p25)
            height = max(bottom - top, 3.0)  # a tight sample still shows a box
            marks.append(rect(cx - half, top, 2 * half, height, fill, "iqr", box.tip(unit)))
        for tick in () if box.raw else (box.p90, box.p99):
            if tick is not None:
                marks.append(
                    line(cx - half / 2, y(tick), cx + half / 2, y(tick), "tick-mark", fill)
                )
        marks.append(line(cx - half, y(box.median), cx + half, y(box.median), "median"))
        marks.append("</g>")
        marks.append(_category_label(frame, cx, box.label, rotate))
    marks.append(line(frame.x0, frame.y0, frame.x1, frame.y0, "axis"))
    return chart(frame, label, marks)


def _label_room(labels: Sequence[str], rotate: bool) -> int:
    """Bottom margin for category labels: turned 40 degrees, a label needs about 4 px of
    height per character."""
    return 52 if not rotate else 44 + 4 * max(len(label) for label in labels)


def _category_label(frame: Frame, x: float, content: str, rotate: bool) -> str:
    if rotate:
        return text(x + 4, frame.y0 + 12, content, "tick", "end", rotate=-40)
    return text(x, frame.y0 + 17, content, "tick")


def bar_chart(
    categories: Sequence[str], groups: Sequence[BarGroup], y_label: str, label: str
) -> str:
    """Bars side by side per category, one per group, on a linear axis from zero; zero values
    draw no bar."""
    rotate = max(len(c) for c in categories) > 6
    frame = Frame(bottom=_label_room(categories, rotate))
    y = frame.y_scale(*linear_domain([v for g in groups for v in g.values]))
    centres = _category_centres(frame, len(categories))
    slot = (frame.x1 - frame.x0) / len(categories) * 0.8
    width = slot / len(groups)
    marks = [y_axis(frame, y, y_label)]
    for index, group in enumerate(groups):
        left = -slot / 2 + index * width
        for cx, value, tip in zip(centres, group.values, group.tips, strict=True):
            if value > 0:
                top = y(value)
                marks.append(
                    rect(cx + left, top, width - 1, frame.y0 - top, group.color, "bar", tip)
                )
    marks.append(line(frame.x0, frame.y0, frame.x1, frame.y0, "axis"))
    marks.extend(
        _category_label(frame, cx, c, rotate) for cx, c in zip(centres, categories, strict=True)
    )
    return chart(frame, label, marks)


def hbar_chart(rows: Sequence[tuple[str, float, str]], fill: str, x_label: str, label: str) -> str:
    """Horizontal bars, largest first, with the value written at the end of each bar."""
    ordered = sorted(rows, key=lambda row: -row[1])
    frame = Frame(height=40 + 22 * len(ordered) + 40, left=230, right=70, top=10, bottom=44)
    x = frame.x_scale(*linear_domain([row[1] for row in ordered]))
    step = (frame.y0 - frame.y1) / len(ordered)
    marks = [x_grid(frame, x), x_axis(frame, numeric_x_ticks(x), x_label)]
    for index, (name, value, tip) in enumerate(ordered):
        top = frame.y1 + index * step + step * 0.15
        marks.append(rect(frame.x0, top, x(value) - frame.x0, step * 0.7, fill, "bar", tip))
        middle = top + step * 0.35 + 4
        marks.append(text(frame.x0 - 6, middle, name, "tick", "end"))
        marks.append(text(x(value) + 4, middle, number(value), "value", "start"))
    marks.append(line(frame.x0, frame.y0, frame.x0, frame.y1, "axis"))
    return chart(frame, label, marks)


@dataclass(frozen=True)
class Roof:
    """A compute ceiling; dtypes with the same peak share one line. An `achievable` roof is a
    measured library rate, drawn dashed below the ceilings."""

    dtypes: str
    gflops: float
    achievable: bool = False


def roofline_chart(
    roofs: Sequence[Roof],
    bandwidth_gbs: float | None,
    points: Sequence[RoofPoint],
    label: str,
    achievable_gbs: float | None = None,
) -> str:
    """Log-log: the bandwidth slope meets each compute ceiling at its ridge point; what lies
    under the lower of the two is attainable. Achievable roofs and `achievable_gbs` (measured
    rates) are dashed."""
    frame = Frame(height=400, right=120)
    ridges = [r.gflops / bandwidth_gbs for r in roofs] if bandwidth_gbs else []
    intensities = [p.intensity for p in points] + ridges
    x = frame.x_scale(*log_domain([min(intensities) / 2, max(intensities) * 2]), log=True)
    ceiling = max([r.gflops for r in roofs] + [p.gflops for p in points])
    y = frame.y_scale(*log_domain([p.gflops for p in points] + [ceiling * 1.5]), log=True)
    marks = [
        x_grid(frame, x),
        y_axis(frame, y, "attained GFLOP/s, log scale"),
        x_axis(frame, numeric_x_ticks(x), "arithmetic intensity (FLOP/byte), log scale"),
    ]
    if bandwidth_gbs:
        placed = [(x(p.intensity), y(p.gflops)) for p in points]
        marks.append(_bandwidth_roof(x, y, bandwidth_gbs, max(ridges), placed))
    if achievable_gbs and ridges:  # up to where it meets the highest achievable compute rate
        start = max(x.lo, y.lo / achievable_gbs)
        tops = [r.gflops for r in roofs if r.achievable]
        end = min(max(tops) / achievable_gbs if tops else max(ridges), x.hi)
        marks.append(
            line(
                x(start),
                y(start * achievable_gbs),
                x(end),
                y(end * achievable_gbs),
                "roof-achievable",
            )
        )
    for roof in roofs:
        slope = (achievable_gbs if roof.achievable else None) or bandwidth_gbs
        start = roof.gflops / slope if slope else x.lo
        level = y(roof.gflops)
        css = "roof-achievable" if roof.achievable else "roof"
        marks.append(line(x(max(start, x.lo)), level, frame.x1, level, css))
        caption = f"{roof.dtypes}{' achievable' if roof.achievable else ''}: {number(roof.gflops)}"
        marks.append(text(frame.x1 + 4, level + 4, caption, "roof-label", "start"))
    shapes = [marker(p.shape, x(p.intensity), y(p.gflops), p.color, p.tip) for p in points]
    return chart(frame, label, [*marks, *shapes])


def _bandwidth_roof(
    x: Scale, y: Scale, gbs: float, ridge: float, avoid: Sequence[tuple[float, float]]
) -> str:
    """The slanted roof, from where it enters the plot to the highest ridge point, labelled
    along its slope where the label is farthest from the `avoid` points (pixels)."""
    start = max(x.lo, y.lo / gbs)
    x1, y1, x2, y2 = x(start), y(start * gbs), x(ridge), y(ridge * gbs)
    angle = math.degrees(math.atan2(y2 - y1, x2 - x1))

    def clearance(t: float) -> float:
        at = (x1 + (x2 - x1) * t, y1 + (y2 - y1) * t)
        return min((math.dist(at, p) for p in avoid), default=math.inf)

    t = max((0.35, 0.5, 0.65, 0.8), key=clearance)
    label_x, label_y = x1 + (x2 - x1) * t, y1 + (y2 - y1) * t - 6  # just above the slope
    return line(x1, y1, x2, y2, "roof") + text(
        label_x, label_y, f"memory {number(gbs)} GB/s", "roof-label", rotate=angle
    )
