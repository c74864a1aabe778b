"""`runner zoo list | build`: the models every benchmark can name."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from ir.errors import UnknownModelError
from ir.units import si
from runner.console import console
from zoo.cache import cached_path, model_file
from zoo.catalog import ZOO
from zoo.stats import stats_for


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="every zoo model: category, size, data, metric")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.set_defaults(handler=list_models)
    build = commands.add_parser("build", help="build (and cache) a zoo model")
    build.add_argument("names", nargs="+", metavar="NAME")
    build.set_defaults(handler=build_models)


def _row(name: str) -> dict:
    entry = ZOO[name]
    path = entry.file or cached_path(entry)
    # Computed (and kept beside the file) for any built model: `bench`, `run` and the rest
    # build through zoo.cache, which writes no stats; only `zoo build` did.
    stats = stats_for(path, compute=True)
    return {
        "name": name,
        "category": entry.category,
        "task": entry.task,
        "dataset": entry.dataset,
        "metric": entry.metric,
        "available": entry.unavailable() is None,
        "why_not": entry.unavailable(),
        "built": path.is_file(),
        "params": None if stats is None else stats.params,
        "flops": None if stats is None else stats.flops,
        "inputs": None if stats is None else stats.inputs,
    }


def list_models(args: argparse.Namespace) -> int:
    rows = [_row(name) for name in ZOO]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="zoo (FLOPs at batch 1; `runner zoo build NAME` fills in unbuilt rows)")
    for column in ("name", "category", "task", "params", "FLOPs", "inputs", "dataset", "metric"):
        table.add_column(column)
    for row in rows:
        size = "-" if row["params"] is None else si(row["params"])
        flops = "-" if row["flops"] is None else si(row["flops"])
        inputs = "-" if row["inputs"] is None else ", ".join(row["inputs"].values())
        name = row["name"] if row["available"] else f"{row['name']} ({row['why_not']})"
        table.add_row(
            name, row["category"], row["task"], size, flops, inputs, row["dataset"], row["metric"]
        )
    console().print(table)
    return 0


def build_models(args: argparse.Namespace) -> int:
    for name in args.names:
        if name not in ZOO:
            raise UnknownModelError(f"no zoo model '{name}' (known: {', '.join(ZOO)})")
    for name in args.names:
        path = model_file(ZOO[name])
        stats = stats_for(path, compute=True)
        assert stats is not None
        print(f"{name}: {path} ({si(stats.params)} params, {si(stats.flops, 'FLOP')} at batch 1)")
    return 0
