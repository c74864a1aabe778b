"""`runner ir show | convert | verify`: look at a model through the IR."""

from __future__ import annotations

import argparse
import json

from ir.bindings import load_bound_model, parse_dim_options
from ir.files import check_output_file
from ir.listing import counted, format_listing, summarize
from ir.model_io import load_model, save_model
from ir.verifier import verify
from zoo.resolve import resolve_model


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)

    show = commands.add_parser(
        "show", help="one line per node: id, op, shapes, attributes, FLOPs; then totals"
    )
    show.add_argument("model", metavar="MODEL", help="path to an .onnx file or a zoo model name")
    show.add_argument("--json", action="store_true", help="print the listing as JSON")
    show.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="give a symbolic dimension a value for the FLOP count (repeatable)",
    )
    show.set_defaults(handler=show_model)

    convert = commands.add_parser("convert", help="ONNX -> IR -> ONNX (re-serialize)")
    convert.add_argument("model", metavar="IN", help="path to an .onnx file or a zoo model name")
    convert.add_argument("output", metavar="OUT", help="where to write the ONNX file")
    convert.add_argument(
        "--external-data",
        action="store_true",
        help="write the weights to OUT.data (automatic above the 2 GiB protobuf limit)",
    )
    convert.set_defaults(handler=convert_model)

    check = commands.add_parser("verify", help="check SSA, uses, cycles, order and types")
    check.add_argument("model", metavar="MODEL", help="path to an .onnx file or a zoo model name")
    check.add_argument("--json", action="store_true", help="print the violations as JSON")
    check.set_defaults(handler=verify_model)


def show_model(args: argparse.Namespace) -> int:
    bindings = parse_dim_options(args.dim)
    model = load_bound_model(resolve_model(args.model), bindings)
    summary = summarize(model, bindings)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print(format_listing(summary, title=args.model))
    return 0


def convert_model(args: argparse.Namespace) -> int:
    output = check_output_file(args.output, "OUT")
    if args.external_data:
        check_output_file(f"{output}.data", "OUT's weights")
    model = load_model(resolve_model(args.model))
    written = save_model(model, args.output, external_data=args.external_data or None)
    print(f"wrote {written} ({counted(len(list(model.graph.all_nodes())), 'node')})")
    return 0


def verify_model(args: argparse.Namespace) -> int:
    model = load_model(resolve_model(args.model))
    violations = verify(model)
    if args.json:
        print(json.dumps([v.to_json() for v in violations], indent=2))
    else:
        for violation in violations:
            print(f"{violation.rule}: {violation.message}")
        nodes = len(list(model.graph.all_nodes()))
        print(f"{args.model}: {counted(nodes, 'node')}, {counted(len(violations), 'violation')}")
    return 1 if violations else 0
