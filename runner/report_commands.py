"""`runner report show | compare | html`: result documents read back (checked against their
schema, older versions upgraded), for a terminal or as one self-contained HTML dashboard."""

from __future__ import annotations

import argparse
import json

from ir.files import check_output_file, write_text_atomically
from runner.console import console
from runner.report.compare import compare_results, comparison_table
from runner.report.costs import CostOverride, parse_override
from runner.report.html import render_html
from runner.report.profile_compare import compare_profiles, profile_comparison_table
from runner.report.show import show_renderables
from runner.report.sweep_folder import is_sweep_folder, read_sweep_folder
from runner.results.files import Result, read_result
from runner.results.profile import ProfileResult


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    show = commands.add_parser("show", help="one result in the terminal")
    show.add_argument("result", metavar="RESULT", help="result.json or its folder")
    show.set_defaults(handler=show_report)

    compare = commands.add_parser("compare", help="two results side by side, with ratios")
    compare.add_argument("a", metavar="A", help="the baseline result")
    compare.add_argument("b", metavar="B", help="the result compared with it")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    compare.set_defaults(handler=compare_reports)

    html = commands.add_parser("html", help="one self-contained HTML dashboard")
    html.add_argument(
        "results",
        nargs="+",
        metavar="RESULT",
        help="result files or folders, or sweep folders (`runner sweep --out`)",
    )
    html.add_argument("-o", "--output", required=True, metavar="FILE", help="the .html to write")
    html.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="HW=USD[/h]",
        help="price of hardware the database lacks (e.g. host=0.089/h for an hourly rate)",
    )
    html.add_argument(
        "--watts", action="append", default=[], metavar="HW=W", help="its power, in watts"
    )
    html.set_defaults(handler=html_report)


def show_report(args: argparse.Namespace) -> int:
    result = read_result(args.result)
    out = console()
    for renderable in show_renderables(result, args.result):
        out.print(renderable)
    return 0


def compare_reports(args: argparse.Namespace) -> int:
    a, b = read_result(args.a), read_result(args.b)
    if isinstance(a, ProfileResult) and isinstance(b, ProfileResult):
        profiles = compare_profiles(a, b, args.a, args.b)
        if args.json:
            print(json.dumps(profiles.to_json(), indent=2))
        else:
            console().print(profile_comparison_table(profiles))
        return 0
    comparison = compare_results(a, b, args.a, args.b)
    if args.json:
        print(json.dumps(comparison.to_json(), indent=2))
    else:
        console().print(comparison_table(comparison))
    return 0


def html_report(args: argparse.Namespace) -> int:
    output = check_output_file(args.output, "-o")
    results: list[tuple[str, Result]] = []
    sweeps = []
    for path in args.results:
        if is_sweep_folder(path):  # its jobs' results, and its side-by-side section
            sweeps.append(read_sweep_folder(path))
            results += sweeps[-1].results()
        else:
            results.append((path, read_result(path)))
    overrides = _overrides(args.price, args.watts)
    write_text_atomically(output, render_html(results, overrides, output.parent, sweeps))
    console().print(f"report: {output}", markup=False)
    return 0


def _overrides(prices: list[str], watts: list[str]) -> dict[str, CostOverride]:
    """`--price` and `--watts` merged per hardware name."""
    merged: dict[str, CostOverride] = {}
    for text in prices:
        name, override = parse_override(text, "--price")
        merged[name] = merged.get(name, CostOverride()).merge(override)
    for text in watts:
        name, override = parse_override(text, "--watts")
        merged[name] = merged.get(name, CostOverride()).merge(override)
    return merged
