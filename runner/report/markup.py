"""HTML building blocks for the report page. Every value is escaped on its way in, so a result
whose model is named `<script>` renders as text; only `Markup` (built here from escaped parts)
passes through as is."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#ff9da7",
    "#bab0ac",
)
MISSING = "—"


@dataclass(frozen=True)
class Markup:
    """HTML that is already safe: built from escaped values only."""

    html: str


def esc(value: object) -> str:
    """Text and attribute-safe: quotes are escaped too."""
    return html.escape(str(value), quote=True)


def render(value: object) -> str:
    """Markup as is, None as a dash, anything else escaped."""
    if isinstance(value, Markup):
        return value.html
    return MISSING if value is None else esc(value)


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def number(value: float | None, digits: int = 3) -> str:
    """Thousands separated from 1000 up, `digits` significant digits below."""
    if value is None:
        return MISSING
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def link(path: str, text: str) -> Markup:
    """A link to a relative, "/"-separated `path` (a space or a `#` in a name is escaped)."""
    return Markup(f'<a href="{esc(quote(path))}">{esc(text)}</a>')


def badge(text: str, good: bool) -> Markup:
    return Markup(f'<span class="badge {"good" if good else "bad"}">{esc(text)}</span>')


def warning_badge(text: str) -> Markup:
    """A badge for what changes how a figure reads rather than failing it."""
    return Markup(f'<span class="badge warn">{esc(text)}</span>')


def with_flag(value: object, flag: str | None) -> object:
    """`value` with a warning badge beside it where there is a flag; as it is without one."""
    if flag is None:
        return value
    return Markup(f"{render(value)} {warning_badge(flag).html}")


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Iterable[int] = ()
) -> str:
    """A table; the `numeric` columns are right-aligned."""
    right = set(numeric)

    def cells(tag: str, values: Sequence[object]) -> str:
        return "".join(
            f"<{tag}{' class=num' if i in right else ''}>{render(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', headers)}</tr></thead><tbody>{body}</tbody></table>"


def legend(entries: Iterable[tuple[str, str]]) -> str:
    """Label and colour per series, as HTML so long labels wrap instead of overlapping."""
    items = "".join(
        f'<li><span class="swatch" style="background:{esc(fill)}"></span>{esc(label)}</li>'
        for label, fill in entries
    )
    return f'<ul class="legend">{items}</ul>'


def figure(title: str, chart: str, caption: str = "") -> str:
    """A chart with its heading and, below, its legend or note (already HTML)."""
    return f"<figure><h3>{esc(title)}</h3>{chart}<figcaption>{caption}</figcaption></figure>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def section(anchor: str, title: str, intro: str, body: str) -> str:
    return (
        f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>'
        f'<p class="intro">{esc(intro)}</p>{body}</section>'
    )


def grid(figures: Iterable[str]) -> str:
    return f'<div class="grid">{"".join(figures)}</div>'
