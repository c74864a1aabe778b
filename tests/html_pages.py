"""Reading an HTML report back in tests: a section's markup and its tables' cells."""

from __future__ import annotations

import re


def section_of(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match[1]


def table_rows(fragment: str) -> list[list[str]]:
    """Every body row's cells, as markup."""
    body = re.findall(r"<tbody>(.*?)</tbody>", fragment, re.S)
    rows = [row for part in body for row in re.findall(r"<tr>(.*?)</tr>", part, re.S)]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]
