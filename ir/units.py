"""Counts as people read them (1.23 M, 4 KiB), for listings and tables. Standard library only:
`runner zoo list` formats with it before anything heavy is imported."""

from __future__ import annotations

import math


def si(count: float, unit: str = "", *, binary: bool = False) -> str:
    """1234567 -> '1.23 M'; bytes use powers of 1024 (KiB, MiB, ...)."""
    base, prefixes = (
        (1024.0, ["", "Ki", "Mi", "Gi", "Ti", "Pi"])
        if binary
        else (
            1000.0,
            ["", "K", "M", "G", "T", "P"],
        )
    )
    if count == 0:
        return f"0 {unit}".rstrip()
    exponent = min(int(math.log(abs(count), base)), len(prefixes) - 1)
    scaled = count / base**exponent
    text = f"{scaled:.0f}" if exponent == 0 else f"{scaled:.3g}"
    return f"{text} {prefixes[exponent]}{unit}".rstrip()
