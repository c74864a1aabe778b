"""`runner hw list | show | compare`: the hardware spec database and the host, side by side."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from ir.errors import AsicperfError
from runner.console import console
from targets.hardware.compare import Comparison, Product, compare, host_product
from targets.hardware.database import all_specs, get
from targets.hardware.host import HostProfile, host_profile
from targets.hardware.spec import DTYPES, HardwareSpec, Price, unit

HOST = "host"


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="every product in the spec database")
    listing.add_argument("--json", action="store_true", help="print the specs as JSON")
    listing.set_defaults(handler=list_hardware)

    show = commands.add_parser("show", help="one product's full spec sheet, or the host")
    show.add_argument("name", metavar="NAME", help=f"slug or product name, or '{HOST}'")
    show.add_argument("--json", action="store_true", help="print the spec as JSON")
    show.add_argument(
        "--refresh", action="store_true", help=f"with '{HOST}': measure again, ignoring the cache"
    )
    show.set_defaults(handler=show_hardware)

    comparison = commands.add_parser(
        "compare", help="products side by side, with ratios to the first and per-$ / per-W value"
    )
    comparison.add_argument(
        "names", nargs="+", metavar="NAME", help=f"two or more products; '{HOST}' for this machine"
    )
    comparison.add_argument(
        "--dtype", choices=DTYPES, default="bf16", help="dtype whose peak is compared (bf16)"
    )
    comparison.add_argument(
        "--sparse", action="store_true", help="compare sparse peaks instead of dense ones"
    )
    comparison.add_argument("--json", action="store_true", help="print the comparison as JSON")
    comparison.set_defaults(handler=compare_hardware)


def list_hardware(args: argparse.Namespace) -> int:
    specs = all_specs()
    if args.json:
        print(json.dumps([spec.to_json() for spec in specs], indent=2))
        return 0
    table = Table(title=f"hardware spec database ({len(specs)} products, dense peaks)")
    for column in ("slug", "product", "kind", "year", "memory", "GB/s", "bf16", "int8", "W"):
        table.add_column(column, justify="left" if column in ("slug", "product") else "right")
    table.add_column("price")
    for spec in specs:
        table.add_row(
            spec.slug,
            spec.name,
            spec.kind,
            str(spec.release_year),
            f"{_number(spec.memory_gb)} GB {spec.memory_type.split(' ')[0]}",
            _number(spec.memory_bandwidth_gbs),
            _number(spec.peak("bf16")),
            _number(spec.peak("int8")),
            _number(spec.tdp_w),
            _price(spec.price),
        )
    console().print(table)
    return 0


def show_hardware(args: argparse.Namespace) -> int:
    if args.name.strip().lower() == HOST:
        profile = host_profile(refresh=args.refresh)
        if args.json:
            print(json.dumps(profile.to_json(), indent=2))
        else:
            console().print(_host_table(profile))
        return 0
    if args.refresh:
        raise AsicperfError(f"--refresh applies to '{HOST}' only, not '{args.name}'")
    spec = get(args.name)
    if args.json:
        print(json.dumps(spec.to_json(), indent=2))
    else:
        console().print(_spec_table(spec))
    return 0


def compare_hardware(args: argparse.Namespace) -> int:
    result = compare([_product(name) for name in args.names], args.dtype, sparse=args.sparse)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        console().print(_comparison_table(result))
        if any(row.slug == HOST for row in result.rows):
            console().print(
                f"{HOST}: peaks are ISA ceilings at the measured clock, bandwidth the fastest "
                f"measured stream (`runner hw show {HOST}`)",
                markup=False,
            )
    return 0


def _product(name: str) -> Product:
    """A database entry, or the host (measured once, then cached)."""
    return host_product(host_profile(), HOST) if name.strip().lower() == HOST else get(name)


def _spec_table(spec: HardwareSpec) -> Table:
    table = Table(title=f"{spec.name} ({spec.slug})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("kind", f"{spec.kind}, released {spec.release_year}")
    table.add_row("memory", f"{_number(spec.memory_gb)} GB {spec.memory_type}")
    table.add_row("bandwidth", f"{_number(spec.memory_bandwidth_gbs)} GB/s")
    for dtype in DTYPES:
        dense, sparse = spec.peak(dtype), spec.peak(dtype, sparse=True)
        if dense is not None or sparse is not None:
            text = f"{_number(dense)} dense, {_number(sparse)} sparse {unit(dtype)}"
            table.add_row(f"peak {dtype}", text)
    table.add_row("TDP", f"{_number(spec.tdp_w)} W")
    table.add_row("interconnect", spec.interconnect or "-")
    table.add_row("form factor", spec.form_factor or "-")
    if spec.price:
        note = f" ({spec.price.note})" if spec.price.note else ""
        price = f"{_price(spec.price)}, {spec.price.date}{note}; {spec.price.source}"
        table.add_row("price", price)
    else:
        table.add_row("price", "-")
    table.add_row("sources", "\n".join(spec.sources))
    table.add_row("notes", spec.notes or "-")
    return table


def _host_table(profile: HostProfile) -> Table:
    cpu, measured = profile.cpu, profile.measurement
    table = Table(title=f"host: {cpu.model}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("cores", f"{cpu.cores} cores, {cpu.threads} threads, {cpu.sockets} socket(s)")
    table.add_row("ISA flags", ", ".join(cpu.flags) or "-")
    table.add_row("memory", f"{_number(cpu.memory_gib)} GiB")
    table.add_row("core", profile.core.describe() + ("" if profile.core.known else " (fallback)"))
    clock = profile.clock
    if clock is None:
        table.add_row("clock", "- (neither measured nor reported: no ceilings)")
    else:
        how = measured.clock_method if clock[1] == "measured" else clock[1]
        table.add_row("clock", f"{clock[0]:.2f} GHz ({how})")
    for dtype, peak in profile.peaks.items():
        rate = "GOP/s" if dtype == "int8" else "GFLOP/s"
        table.add_row(f"ceiling {dtype}", f"{peak.gflops:,.1f} {rate} ({peak.source})")
    table.add_row(
        "achievable FP32",
        f"{measured.fp32_gemm_gflops:,.1f} GFLOP/s measured (numpy matmul, "
        f"{measured.gemm_size}x{measured.gemm_size}, best of repeats)",
    )
    table.add_row(
        "achievable memory",
        f"read {_number(measured.read_gbs)} GB/s, copy {measured.copy_gbs:,.1f} GB/s, "
        f"triad {measured.triad_gbs:,.1f} GB/s measured "
        f"({measured.threads} threads, {measured.array_mib} MiB arrays, "
        f"last-level cache {_number(measured.llc_mib)} MiB)",
    )
    origin = "cached" if profile.from_cache else "measured now"
    table.add_row("measured", f"{measured.measured_at}, {origin} ({profile.cache_path})")
    return table


def _comparison_table(result: Comparison) -> Table:
    peak = f"{result.dtype} {'sparse' if result.sparse else 'dense'} {result.unit}"
    table = Table(title=f"peak {peak}; ratios (x) against {result.baseline}")
    columns = (peak, "x", "memory GB", "x", "GB/s", "x", "W", f"{result.unit}/W", "price")
    table.add_column("product")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column(f"{result.unit} per $/h", justify="right")
    table.add_column(f"{result.unit} per $1k", justify="right")
    for row in result.rows:
        table.add_row(
            row.name,
            _number(row.peak),
            _ratio(row.peak_ratio),
            _number(row.memory_gb),
            _ratio(row.memory_ratio),
            _number(row.memory_bandwidth_gbs),
            _ratio(row.bandwidth_ratio),
            _number(row.tdp_w),
            _number(row.peak_per_watt, digits=3),
            _price_text(row.price_usd, row.price_kind),
            _number(row.peak_per_usd_hour),
            _number(row.peak_per_1000_usd),
        )
    return table


def _number(value: float | None, digits: int = 4) -> str:
    """Up to `digits` significant figures with thousands separators; '-' when not published."""
    if value is None:
        return "-"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:,.{digits}g}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _price(price: Price | None) -> str:
    return _price_text(price.usd, price.kind) if price else "-"


def _price_text(usd: float | None, kind: str | None) -> str:
    if usd is None:
        return "-"
    return f"${_number(usd)}/h" if kind == "cloud-hourly" else f"${_number(usd)} list"
