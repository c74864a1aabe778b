"""The hardware spec database: one TOML file per product under specs/, found by slug or name.

A name is matched after folding case and treating spaces, dashes and underscores alike, so
`nvidia-a100-sxm4`, `NVIDIA A100 SXM4` and the product name `A100 SXM4 80GB` all work; an
unknown name lists the closest entries instead of failing blind.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence
from pathlib import Path

from ir.errors import AsicperfError
from targets.hardware.spec import HardwareSpec, SpecError, load_spec

SPECS_DIR = Path(__file__).with_name("specs")
_MAX_SUGGESTIONS = 5


class UnknownHardwareError(AsicperfError):
    """A hardware name matches no entry of the database."""


def load_specs(directory: str | Path = SPECS_DIR) -> tuple[HardwareSpec, ...]:
    """Every spec file in `directory`, sorted by slug; two files naming one product is an error."""
    directory = Path(directory)
    specs = tuple(load_spec(path) for path in sorted(directory.glob("*.toml")))
    if not specs:
        raise SpecError(f"{directory}: no hardware spec files (*.toml)")
    seen: dict[str, str] = {}
    for spec in specs:
        for key in {_fold(spec.product), _fold(spec.name)}:
            if key in seen and seen[key] != spec.slug:
                raise SpecError(
                    f"{directory}: '{spec.name}' is described twice ({seen[key]}, {spec.slug})"
                )
            seen[key] = spec.slug
    return specs


@functools.cache
def all_specs() -> tuple[HardwareSpec, ...]:
    """The shipped database, parsed once per process."""
    return load_specs(SPECS_DIR)


def get(name: str, specs: Sequence[HardwareSpec] | None = None) -> HardwareSpec:
    """The entry whose slug, product name or vendor + product name is `name`."""
    specs = all_specs() if specs is None else specs
    wanted = _fold(name)
    for spec in specs:
        if wanted in (spec.slug, _fold(spec.product), _fold(spec.name)):
            return spec
    suggestions = close_matches(name, specs)
    hint = f"did you mean {', '.join(suggestions)}? " if suggestions else ""
    raise UnknownHardwareError(
        f"unknown hardware '{name}'; {hint}(`runner hw list` shows all {len(specs)})"
    )


def close_matches(name: str, specs: Sequence[HardwareSpec]) -> list[str]:
    """Slugs that contain `name`, then slugs or product names that look like it."""
    wanted = _fold(name)
    slugs = [spec.slug for spec in specs]
    found = [slug for slug in slugs if wanted and wanted in slug]
    by_key = {slug: slug for slug in slugs} | {_fold(spec.product): spec.slug for spec in specs}
    for key in difflib.get_close_matches(wanted, list(by_key), n=_MAX_SUGGESTIONS, cutoff=0.6):
        if by_key[key] not in found:
            found.append(by_key[key])
    return found[:_MAX_SUGGESTIONS]


def _fold(text: str) -> str:
    return re.sub(r"[\s_-]+", "-", text.strip().lower())
