"""SVG primitives for the report's charts: scales, axes and marks, drawn in Python so the page
needs no script or network to show them. Marks carry a `<title>`, which browsers show on hover."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runner.report.markup import esc

WIDTH, HEIGHT = 640, 340


@dataclass(frozen=True)
class Scale:
    """Data values `lo..hi` onto pixels `start..end`, linearly or by their logarithm."""

    lo: float
    hi: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        if self.log:  # a zero or negative value sits at the bottom rather than failing
            lo, hi = math.log10(self.lo), math.log10(self.hi)
            value = math.log10(max(value, self.lo))
        else:
            lo, hi = self.lo, self.hi
        fraction = (value - lo) / (hi - lo) if hi != lo else 0.5
        return round(self.start + fraction * (self.end - self.start), 1)

    def ticks(self) -> list[float]:
        """Decades (with 2 and 5 between when there are few) on a log scale; 1-2-5 steps on a
        linear one."""
        if self.log:
            first, last = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            decades = [10.0**e for e in range(first, last + 1)]
            steps = (1, 2, 5) if last - first <= 2 else (1,)
            return [d * s for d in decades for s in steps if self.lo <= d * s <= self.hi]
        step = nice_step((self.hi - self.lo) / 5)
        count = math.floor((self.hi - self.lo) / step + 1e-9)
        return [self.lo + i * step for i in range(count + 1)]


def nice_step(rough: float) -> float:
    """The 1, 2 or 5 times a power of ten closest above `rough`."""
    if rough <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough)


def log_domain(values: Iterable[float]) -> tuple[float, float]:
    """Whole decades around the positive values."""
    positive = [v for v in values if v > 0] or [1.0]
    lo, hi = math.log10(min(positive)), math.log10(max(positive))
    lo_decade, hi_decade = math.floor(lo), math.ceil(hi)
    if hi_decade == lo_decade:
        hi_decade += 1
    return 10.0**lo_decade, 10.0**hi_decade


def linear_domain(values: Iterable[float]) -> tuple[float, float]:
    """From zero to a round number at or above the largest value."""
    top = max([*values, 0.0])
    step = nice_step(top / 5) if top > 0 else 1.0
    return 0.0, step * math.ceil(top / step - 1e-9) if top > 0 else 1.0


def short(value: float) -> str:
    """A tick label: 1k, 20M, 0.001."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


@dataclass(frozen=True)
class Frame:
    """The plotting area inside a chart's margins."""

    width: int = WIDTH
    height: int = HEIGHT
    left: int = 72
    right: int = 20
    top: int = 16
    bottom: int = 52

    @property
    def x0(self) -> int:
        return self.left

    @property
    def x1(self) -> int:
        return self.width - self.right

    @property
    def y0(self) -> int:
        return self.height - self.bottom

    @property
    def y1(self) -> int:
        return self.top

    def x_scale(self, lo: float, hi: float, log: bool = False) -> Scale:
        return Scale(lo, hi, self.x0, self.x1, log)

    def y_scale(self, lo: float, hi: float, log: bool = False) -> Scale:
        return Scale(lo, hi, self.y0, self.y1, log)


def chart(frame: Frame, label: str, marks: Iterable[str]) -> str:
    """The `<svg>` element, scaled to its container's width."""
    return (
        f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" role="img" '
        f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">{"".join(marks)}</svg>'
    )


def title(tip: str) -> str:
    return f"<title>{esc(tip)}</title>"


def text(
    x: float, y: float, content: str, css: str = "", anchor: str = "middle", rotate: float = 0
) -> str:
    turn = f' transform="rotate({rotate:g} {x:g} {y:g})"' if rotate else ""
    return (
        f'<text x="{x:g}" y="{y:g}" text-anchor="{anchor}" class="{css}"{turn}>'
        f"{esc(content)}</text>"
    )


def line(x1: float, y1: float, x2: float, y2: float, css: str, stroke: str = "") -> str:
    paint = f' stroke="{esc(stroke)}"' if stroke else ""
    return f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" class="{css}"{paint}/>'


def polyline(points: Sequence[tuple[float, float]], stroke: str, css: str = "series") -> str:
    coords = " ".join(f"{x:g},{y:g}" for x, y in points)
    return f'<polyline points="{coords}" class="{css}" stroke="{esc(stroke)}" fill="none"/>'


def rect(x: float, y: float, width: float, height: float, fill: str, css: str, tip: str) -> str:
    return (
        f'<rect x="{x:g}" y="{y:g}" width="{max(width, 0):g}" height="{max(height, 0):g}" '
        f'fill="{esc(fill)}" class="{css}">{title(tip)}</rect>'
    )


MARKERS = ("circle", "square", "diamond", "triangle")


def marker(
    shape: str, x: float, y: float, fill: str, tip: str, hollow: bool = False, size: float = 5
) -> str:
    """A data point; hollow points are the ones to distrust (an invalid run)."""
    paint = f'fill="white" stroke="{esc(fill)}"' if hollow else f'fill="{esc(fill)}" stroke="white"'
    css = "point invalid" if hollow else "point"
    if shape == "circle":
        shape_at = f'cx="{x:g}" cy="{y:g}" r="{size:g}"'
        return f'<circle {shape_at} class="{css}" {paint}>{title(tip)}</circle>'
    corners = {
        "square": [(-1, -1), (1, -1), (1, 1), (-1, 1)],
        "diamond": [(0, -1.3), (1.3, 0), (0, 1.3), (-1.3, 0)],
        "triangle": [(0, -1.3), (1.2, 1), (-1.2, 1)],
    }[shape]
    coords = " ".join(f"{x + dx * size:.1f},{y + dy * size:.1f}" for dx, dy in corners)
    return f'<polygon points="{coords}" class="{css}" {paint}>{title(tip)}</polygon>'


def y_axis(frame: Frame, scale: Scale, label: str, ticks: Iterable[float] | None = None) -> str:
    """Horizontal grid lines with tick labels on the left, and the axis title turned upright."""
    marks = []
    for value in scale.ticks() if ticks is None else ticks:
        y = scale(value)
        marks.append(line(frame.x0, y, frame.x1, y, "grid"))
        marks.append(text(frame.x0 - 6, y + 4, short(value), "tick", "end"))
    middle = (frame.y0 + frame.y1) / 2
    marks.append(text(14, middle, label, "axis-title", rotate=-90))
    marks.append(line(frame.x0, frame.y0, frame.x0, frame.y1, "axis"))
    return "".join(marks)


def x_axis(frame: Frame, ticks: Iterable[tuple[float, str]], label: str) -> str:
    """Tick labels under the plotting area at the given pixel positions, and the axis title."""
    marks = [line(frame.x0, frame.y0, frame.x1, frame.y0, "axis")]
    for x, tick in ticks:
        marks.append(line(x, frame.y0, x, frame.y0 + 4, "axis"))
        marks.append(text(x, frame.y0 + 17, tick, "tick"))
    marks.append(text((frame.x0 + frame.x1) / 2, frame.height - 10, label, "axis-title"))
    return "".join(marks)


def x_grid(frame: Frame, scale: Scale) -> str:
    """Vertical grid lines for a numeric x scale."""
    return "".join(line(scale(v), frame.y0, scale(v), frame.y1, "grid") for v in scale.ticks())


def numeric_x_ticks(scale: Scale) -> list[tuple[float, str]]:
    return [(scale(v), short(v)) for v in scale.ticks()]
