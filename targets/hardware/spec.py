"""One product's published specifications, parsed from a hand-edited TOML file.

The files are typed by people, so the parser trusts nothing: an unknown key (a typo), a wrong
type, a value outside the plausible range of its unit (a bandwidth typed in TB/s, a price without
a source) all end as one line naming the file and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ir.errors import AsicperfError

DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
KINDS = ("GPU", "ASIC", "CPU", "NPU", "IPU")
PRICE_KINDS = ("list", "cloud-hourly")
DOCUMENT_PREFIX = "document: "

# Plausible ranges per unit: a value outside one is nearly always a unit slip, not a product.
MEMORY_GB_RANGE = (0.1, 4096.0)
BANDWIDTH_GBS_RANGE = (10.0, 20_000.0)
TDP_W_RANGE = (1.0, 3000.0)
TFLOPS_RANGE = (0.01, 100_000.0)
USD_RANGE = (0.01, 10_000_000.0)
YEAR_RANGE = (1990, 2100)

_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-\d{2})?$")
_TOP_LEVEL = (
    "vendor",
    "product",
    "kind",
    "release_year",
    "memory_gb",
    "memory_type",
    "memory_bandwidth_gbs",
    "peak_dense_tflops",
    "peak_sparse_tflops",
    "tdp_w",
    "interconnect",
    "form_factor",
    "price",
    "sources",
    "notes",
)
_PRICE_FIELDS = ("usd", "kind", "source", "date", "note")


class SpecError(AsicperfError):
    """A hardware spec file is unreadable, misses a field, or has a wrong or implausible value."""


def unit(dtype: str) -> str:
    """Integer throughput is counted in operations, floating point in FLOPs."""
    return "TOPS" if dtype.startswith("int") else "TFLOPS"


@dataclass(frozen=True)
class Price:
    """A public price: USD per unit ("list") or per accelerator-hour ("cloud-hourly")."""

    usd: float
    kind: str
    source: str
    date: str
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "usd": self.usd,
            "kind": self.kind,
            "source": self.source,
            "date": self.date,
            "note": self.note,
        }


@dataclass(frozen=True)
class HardwareSpec:
    """Published figures of one product. Peaks are per accelerator (chip or card as sold);
    a dtype missing from a table was not published, never assumed to be zero."""

    slug: str
    vendor: str
    product: str
    kind: str
    release_year: int
    memory_gb: float
    memory_type: str
    memory_bandwidth_gbs: float | None
    peak_dense_tflops: Mapping[str, float]
    peak_sparse_tflops: Mapping[str, float]
    tdp_w: float | None
    interconnect: str | None
    form_factor: str | None
    price: Price | None
    sources: tuple[str, ...]
    notes: str | None

    @property
    def name(self) -> str:
        return f"{self.vendor} {self.product}"

    def peak(self, dtype: str, *, sparse: bool = False) -> float | None:
        table = self.peak_sparse_tflops if sparse else self.peak_dense_tflops
        return table.get(dtype)

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "vendor": self.vendor,
            "product": self.product,
            "kind": self.kind,
            "release_year": self.release_year,
            "memory_gb": self.memory_gb,
            "memory_type": self.memory_type,
            "memory_bandwidth_gbs": self.memory_bandwidth_gbs,
            "peak_dense_tflops": dict(self.peak_dense_tflops),
            "peak_sparse_tflops": dict(self.peak_sparse_tflops),
            "tdp_w": self.tdp_w,
            "interconnect": self.interconnect,
            "form_factor": self.form_factor,
            "price": self.price.to_json() if self.price else None,
            "sources": list(self.sources),
            "notes": self.notes,
        }


def load_spec(path: str | Path) -> HardwareSpec:
    """Read and check one spec file; its name (without .toml) is the product's slug."""
    path = Path(path)
    if not _SLUG.match(path.stem):
        raise SpecError(f"{path}: file name must be a lowercase slug like 'nvidia-a100-sxm4'")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SpecError(f"{path}: cannot read: {error.strerror or error}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: not valid TOML: {error}") from error
    return parse_spec(data, slug=path.stem, origin=str(path))


def parse_spec(data: Mapping[str, Any], *, slug: str, origin: str) -> HardwareSpec:
    """Check a parsed TOML document field by field; `origin` names it in error messages."""
    fields = _Fields(data, origin)
    fields.reject_unknown(_TOP_LEVEL)
    dense = _peaks(fields, "peak_dense_tflops")
    sparse = _peaks(fields, "peak_sparse_tflops")
    for dtype, value in sparse.items():
        if dtype in dense and value < dense[dtype]:
            raise fields.error(
                f"peak_sparse_tflops.{dtype}",
                f"{value:g} is below the dense figure {dense[dtype]:g} (tables swapped?)",
            )
    return HardwareSpec(
        slug=slug,
        vendor=fields.text("vendor"),
        product=fields.text("product"),
        kind=fields.choice("kind", KINDS),
        release_year=fields.integer("release_year", YEAR_RANGE),
        memory_gb=fields.number("memory_gb", MEMORY_GB_RANGE, "GB"),
        memory_type=fields.text("memory_type"),
        memory_bandwidth_gbs=fields.optional_number(
            "memory_bandwidth_gbs", BANDWIDTH_GBS_RANGE, "GB/s"
        ),
        peak_dense_tflops=dense,
        peak_sparse_tflops=sparse,
        tdp_w=fields.optional_number("tdp_w", TDP_W_RANGE, "W"),
        interconnect=fields.optional_text("interconnect"),
        form_factor=fields.optional_text("form_factor"),
        price=_price(fields),
        sources=fields.sources("sources"),
        notes=fields.optional_text("notes"),
    )


def _peaks(fields: _Fields, key: str) -> dict[str, float]:
    table = fields.table(key)
    if table is None:
        return {}
    table.reject_unknown(DTYPES, what="dtype")
    peaks = {}
    for dtype in DTYPES:
        value = table.optional_number(dtype, TFLOPS_RANGE, unit(dtype))
        if value is not None:
            peaks[dtype] = value
    return peaks


def _price(fields: _Fields) -> Price | None:
    table = fields.table("price")
    if table is None:
        return None
    table.reject_unknown(_PRICE_FIELDS)
    date = table.text("date")
    if not _DATE.match(date):
        raise table.error("date", f"'{date}' is not a date like 2024-06 or 2024-06-13")
    return Price(
        usd=table.number("usd", USD_RANGE, "USD"),
        kind=table.choice("kind", PRICE_KINDS),
        source=table.source("source"),
        date=date,
        note=table.optional_text("note"),
    )


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


class _Fields:
    """Typed reads from one TOML table; every error names the file and the dotted field."""

    def __init__(self, data: Mapping[str, Any], origin: str, prefix: str = "") -> None:
        self._data = data
        self._origin = origin
        self._prefix = prefix

    def error(self, key: str, problem: str) -> SpecError:
        return SpecError(f"{self._origin}: field '{self._prefix}{key}': {problem}")

    def reject_unknown(self, known: Iterable[str], what: str = "field") -> None:
        known = tuple(known)
        for key in self._data:
            if key not in known:
                raise self.error(key, f"unknown {what} (known: {', '.join(known)})")

    def _required(self, key: str) -> Any:
        if key not in self._data:
            raise self.error(key, "missing (required)")
        return self._data[key]

    def text(self, key: str) -> str:
        value = self._required(key)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string, got {_describe(value)}")
        return value.strip()

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if key in self._data else None

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in choices:
            raise self.error(key, f"'{value}' is not one of {', '.join(choices)}")
        return value

    def integer(self, key: str, bounds: tuple[int, int]) -> int:
        value = self._required(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_describe(value)}")
        if not bounds[0] <= value <= bounds[1]:
            raise self.error(key, f"{value} is outside {bounds[0]}-{bounds[1]}")
        return value

    def number(self, key: str, bounds: tuple[float, float], unit_name: str) -> float:
        value = self._required(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number in {unit_name}, got {_describe(value)}")
        if value <= 0:
            raise self.error(key, f"must be positive, got {value}")
        low, high = bounds
        if not low <= value <= high:
            raise self.error(
                key,
                f"{value:g} {unit_name} is outside the plausible {low:g}-{high:g} {unit_name}"
                " (wrong unit?)",
            )
        return float(value)

    def optional_number(
        self, key: str, bounds: tuple[float, float], unit_name: str
    ) -> float | None:
        return self.number(key, bounds, unit_name) if key in self._data else None

    def table(self, key: str) -> _Fields | None:
        if key not in self._data:
            return None
        value = self._data[key]
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table ([{key}]), got {_describe(value)}")
        return _Fields(value, self._origin, f"{self._prefix}{key}.")

    def source(self, key: str) -> str:
        value = self.text(key)
        if not _is_source(value):
            raise self.error(
                key, f"'{value}' is neither an http(s) URL nor '{DOCUMENT_PREFIX}<title>'"
            )
        return value

    def sources(self, key: str) -> tuple[str, ...]:
        value = self._required(key)
        if not isinstance(value, list) or not value:
            raise self.error(key, f"expected a non-empty list of URLs, got {_describe(value)}")
        for item in value:
            if not isinstance(item, str) or not _is_source(item.strip()):
                raise self.error(
                    key, f"{item!r} is neither an http(s) URL nor '{DOCUMENT_PREFIX}<title>'"
                )
        return tuple(item.strip() for item in value)


def _is_source(text: str) -> bool:
    """A URL, or a citation of a document that has none (a white paper, a printed datasheet)."""
    if text.startswith(("https://", "http://")):
        return len(text) > len("https://") and " " not in text
    return text.startswith(DOCUMENT_PREFIX) and len(text) > len(DOCUMENT_PREFIX) + 3
