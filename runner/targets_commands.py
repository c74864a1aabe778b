"""`runner targets list | info`: what is installed to run models on, and what it can run."""

from __future__ import annotations

import argparse
import dataclasses
import json

from rich.table import Table

from runner.console import console
from targets.registry import UnknownTargetError, describe, discover


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="every registered target and whether it runs here")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.set_defaults(handler=list_targets)
    info = commands.add_parser("info", help="one target: device, options, ops and dtypes")
    info.add_argument("name", metavar="NAME")
    info.add_argument("--json", action="store_true", help="print the details as JSON")
    info.set_defaults(handler=target_info)


def list_targets(args: argparse.Namespace) -> int:
    entries = discover()
    infos = [describe(entry) for entry in entries.values()]
    if args.json:
        rows = [{**info.to_json(), "source": entries[info.name].source} for info in infos]
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="targets")
    for column in ("name", "available", "version", "device", "why not"):
        table.add_column(column)
    for info in infos:
        available = "yes" if info.available else "no"
        table.add_row(info.name, available, info.version, info.device, info.why_not or "")
    console().print(table)
    return 0


def target_info(args: argparse.Namespace) -> int:
    entry = discover().get(args.name)
    if entry is None or entry.plugin_type is None:
        why = "not registered" if entry is None else f"cannot be loaded: {entry.load_error}"
        raise UnknownTargetError(f"target '{args.name}' {why} (see `runner targets list`)")
    target = entry.plugin_type()
    info = target.info()
    capabilities = target.capabilities() if info.available else None
    options = {
        field.name: field.default for field in dataclasses.fields(entry.plugin_type.config_type)
    }
    ops = None
    if capabilities is not None and capabilities.ops is not None:
        ops = sorted(f"{d}.{op}" if d else op for d, op in capabilities.ops)
    doc = {
        **info.to_json(),
        "source": entry.source,
        "options": options,
        "ops": ops if capabilities is not None else [],
        "dtypes": sorted(capabilities.dtypes) if capabilities is not None else [],
    }
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    out = console()
    for key in ("name", "version", "device", "available", "why_not", "hardware", "source"):
        out.print(f"{key:>10}  {doc[key]}", markup=False)
    out.print(f"{'options':>10}  " + " ".join(f"{k}={v}" for k, v in options.items()), markup=False)
    out.print(f"{'dtypes':>10}  {', '.join(doc['dtypes'])}", markup=False)
    listed = "every op ONNX defines" if ops is None else f"{len(ops)}: {', '.join(ops)}"
    out.print(f"{'ops':>10}  {listed}", markup=False)
    return 0
