"""`runner zoo list | build`: the models every benchmark can name."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping

from rich.table import Table

from ir.errors import UnknownModelError
from ir.units import si
from runner.console import console, table
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


# A run of digits in a name: a layer's index in `past_key_values.3.key`.
_NUMBER = re.compile(r"(\d+)")


def grouped_inputs(inputs: Mapping[str, str]) -> list[tuple[str, str]]:
    """(name, type) per input, where inputs whose names differ in one number only and whose
    types agree share one entry (`past_key_values.{0..29}.key`, `f32[1,3,past_sequence_length,
    64]`): a decoder's KV cache would otherwise give the listing a line per layer and tensor."""
    groups: dict[tuple[tuple[str, ...], int, str], list[tuple[int, list[str]]]] = {}
    for index, (name, kind) in enumerate(inputs.items()):
        parts = _NUMBER.split(name)  # text, number, text, ...: the numbers at odd places
        groups.setdefault((tuple(parts[0::2]), len(parts), kind), []).append((index, parts))
    entries: list[tuple[int, str, str]] = []
    for (_, _, kind), members in groups.items():
        places = range(1, len(members[0][1]), 2)
        varying = [at for at in places if len({parts[at] for _, parts in members}) > 1]
        if len(varying) != 1:  # one input, or names that differ in several numbers
            entries += [(index, "".join(parts), kind) for index, parts in members]
            continue
        (at,) = varying
        parts = list(members[0][1])
        parts[at] = "{" + _number_set([parts[at] for _, parts in members]) + "}"
        entries.append((members[0][0], "".join(parts), kind))
    return [(name, kind) for _, name, kind in sorted(entries)]


def _number_set(numbers: list[str]) -> str:
    """`0..29` for consecutive numbers, else the numbers as written: `0,2,5`, `01,02`."""
    values = sorted(int(number) for number in numbers)
    written = all(str(int(number)) == number for number in numbers)
    if written and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ",".join(numbers)


def list_models(args: argparse.Namespace) -> int:
    rows = [_row(name) for name in ZOO]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    out = console()
    out.print(_models_table(rows))
    out.print(_inputs_table(rows))
    return 0


def _models_table(rows: list[dict]) -> Table:
    models = table(
        "zoo (FLOPs at batch 1; `runner zoo build NAME` fills in unbuilt rows)",
        *("name", "category", "task", "params", "FLOPs", "dataset", "metric"),
    )
    for row in rows:
        size = "-" if row["params"] is None else si(row["params"])
        flops = "-" if row["flops"] is None else si(row["flops"])
        name = row["name"] if row["available"] else f"{row['name']} ({row['why_not']})"
        models.add_row(
            name, row["category"], row["task"], size, flops, row["dataset"], row["metric"]
        )
    return models


def _inputs_table(rows: list[dict]) -> Table:
    """The built models' inputs, apart from the other columns: a decoder's names and shapes are
    wider than any other cell, and in the models' table they squeezed every column into a few
    letters at 80 columns."""
    inputs = table("inputs (at batch 1)", "model", "input", "type")
    for row in rows:
        for index, (name, kind) in enumerate(grouped_inputs(row["inputs"] or {})):
            inputs.add_row(row["name"] if index == 0 else "", name, kind)
    return inputs


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
