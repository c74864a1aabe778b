"""The terminal view's building blocks, shared by the views of every result kind: titled tables
whose cells are plain text, and figures that show "-" where nothing was measured."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

WARNING_STYLE = "bold yellow"  # what a reader must not miss: a flag beside a figure


def text_table(title: str | Text, columns: Sequence[str]) -> Table:
    """A table whose title and headers are plain text: a name in brackets is not rich markup."""
    table = Table(title=Text(title) if isinstance(title, str) else title)
    for column in columns:
        table.add_column(Text(column))
    return table


def add_text_row(table: Table, *cells: str | Text) -> None:
    """Cells as plain text: a reason or a name in brackets is not rich markup."""
    table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in cells))


def flagged(value: str, flag: str | None) -> Text:
    """`value` with a flag beside it in brackets, styled as a warning; `value` alone without
    one."""
    text = Text(value)
    if flag is not None:
        text.append(f" ({flag})", style=WARNING_STYLE)
    return text


def number_text(value: float | None, spec: str) -> str:
    """`value` formatted, or "-" where it was not measured or not recorded."""
    return "-" if value is None else format(value, spec)
