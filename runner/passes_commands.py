"""`runner passes list | run | sensitivity | explain`: apply audited pipelines, rank the layers
a lossy pipeline hurts, and read the audit logs."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from ir.errors import AsicperfError
from ir.files import check_output_dir, check_output_file
from ir.listing import counted
from ir.memory import check_fits_in_memory
from ir.model_io import load_model, save_model
from ir.node_ids import node_id
from passes.audit import (
    Change,
    ChangeKind,
    PassRecord,
    Skip,
    audited_node_ids,
    read_audit,
    repeat_groups,
    trace_origin,
    write_audit,
)
from passes.catalog import PASSES
from passes.instruments import (
    DisablePasses,
    DumpIR,
    Instrument,
    NumericCheck,
    VerifyAfterEachPass,
)
from passes.layer_scope import is_layer_scoped, scoped
from passes.manager import DEBUG_ENV, debug_level, run_pipeline
from passes.pipeline import PIPELINES, parse_pipeline, parse_straight_pipeline
from passes.sensitivity import DriftBudget, DriftProbe, fit_budget, layer_sensitivity
from passes.steps import most_pass_runs
from passes.target_binding import bind_pipeline
from passes.target_capabilities import check_target_name
from runner.console import console, table, terminal_stderr
from runner.pass_progress import PassProgress
from targets.reference_fallback import TargetFallback
from zoo.resolve import resolve_model
from zoo.workload import shipped_workloads

_EXAMPLES = 3  # changes or skips shown per rule unless --all
_TARGET_HELP = (
    "target whose fused ops the passes may emit (default: the zoo model's workload target; "
    'for any other model none, "": standard ONNX ops only)'
)


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="passes and named pipelines, with options")
    listing.set_defaults(handler=list_passes)

    run = commands.add_parser("run", help="apply a pipeline, write the model and its audit log")
    run.add_argument("model", metavar="MODEL", help="path to an .onnx file or a zoo model name")
    run.add_argument(
        "--pipeline",
        required=True,
        metavar="P",
        help='named pipeline or inline spec, e.g. "O1" or "fold-constants,dce"',
    )
    run.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    run.add_argument("--audit", required=True, metavar="AUDIT.jsonl")
    run.add_argument("--target", metavar="T", help=_TARGET_HELP)
    run.add_argument("--dump-ir", metavar="DIR", help="write the IR after every pass into DIR")
    run.add_argument(
        "--no-numeric",
        action="store_true",
        help="skip the per-pass onnxruntime check of output drift",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the numeric check's batch")
    run.add_argument(
        "--max-drift",
        metavar="METRIC=VALUE",
        help="keep the most sensitive layers in FP32 until e.g. cosine=0.999, "
        "top1-agreement=0.99, max-abs=0.01 or kl=0.01 (mean KL divergence of a `logits` "
        "output) holds against the input model",
    )
    run.add_argument(
        "--debug",
        type=int,
        metavar="N",
        help=f"1: a line per pass, 2: IR diffs, 3: full IR (default ${DEBUG_ENV})",
    )
    run.add_argument(
        "--disable-pass",
        action="append",
        default=[],
        metavar="NAME",
        help="record pass NAME as skipped instead of running it (repeatable), to bisect a bad one",
    )
    run.set_defaults(handler=run_passes)

    sensitivity = commands.add_parser(
        "sensitivity", help="apply a lossy pipeline to one layer at a time and rank the drift"
    )
    sensitivity.add_argument("model", metavar="MODEL", help="path to an .onnx file or a zoo name")
    sensitivity.add_argument("--pipeline", required=True, metavar="P", help='e.g. "int8"')
    sensitivity.add_argument("--target", metavar="T", help=_TARGET_HELP)
    sensitivity.add_argument(
        "--metric",
        default="cosine",
        choices=["cosine", "top1-agreement", "max-abs", "kl"],
        help="what ranks the layers (default cosine)",
    )
    sensitivity.add_argument("--seed", type=int, default=0, help="seed of the batch")
    sensitivity.add_argument("--json", action="store_true", help="print the ranking as JSON")
    sensitivity.set_defaults(handler=rank_layers)

    explain = commands.add_parser("explain", help="what each pass did, from an audit log")
    explain.add_argument("audit", metavar="AUDIT.jsonl")
    explain.add_argument("--node", metavar="ID", help="trace a node id back to the original nodes")
    explain.add_argument("--all", action="store_true", help="list every change and skip")
    explain.set_defaults(handler=explain_audit)


def list_passes(args: argparse.Namespace) -> int:
    passes = table("passes", "name", "what it does", "options")
    for name, pass_type in sorted(PASSES.items()):
        options = " ".join(
            f"{field.name}={_default_text(field)}"
            for field in dataclasses.fields(pass_type.config_type)
        )
        passes.add_row(name, pass_type.summary, options)
    pipelines = table("named pipelines", "name", "passes")
    for name, spec in PIPELINES.items():
        pipelines.add_row(name, spec)
    out = console()
    out.print(passes)
    out.print(pipelines)
    return 0


def _default_text(field: dataclasses.Field) -> str:
    value = field.default
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "-"
    if value == "":
        return "-"  # none, as for an empty list (`target=-`: no target)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _run_outputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The model and audit paths of `passes run`, with `--dump-ir`, checked writable before
    any work: a bad `--audit` must not leave a model without its audit."""
    output = check_output_file(args.output, "-o")
    audit = check_output_file(args.audit, "--audit")
    if output.resolve() == audit.resolve():
        raise AsicperfError(f"-o and --audit are the same file {output}: give each its own")
    if args.dump_ir:
        check_output_dir(args.dump_ir, "--dump-ir")
    return output, audit


def _bound_pipeline(args: argparse.Namespace) -> tuple[str, str]:
    """(the pipeline text bound to the target its passes emit fused ops for, that target): the
    `--target` given, else the target of the zoo model's shipped workload, else none ("").
    An unknown name fails here, before any work."""
    if args.target is not None:
        target = args.target
    else:
        workloads = [w for w in shipped_workloads().values() if w.model == args.model]
        target = workloads[0].target if workloads else ""
    check_target_name(target)
    return (bind_pipeline(args.pipeline, target) if target else args.pipeline), target


def _target_text(target: str) -> str:
    return f"target {target}" if target else "no target (standard ONNX ops only)"


def run_passes(args: argparse.Namespace) -> int:
    spec, target = _bound_pipeline(args)
    output, audit = _run_outputs(args)
    budget = DriftBudget.parse(args.max_drift) if args.max_drift else None
    if budget is None:
        passes = parse_pipeline(spec)
    elif args.disable_pass:
        raise AsicperfError("--max-drift fits its budget with every pass: drop --disable-pass")
    else:
        passes = parse_straight_pipeline(spec, f"--max-drift {args.max_drift}")
    instruments: list[Instrument] = []
    if args.disable_pass:  # checked before any work: a name that is no pass of the pipeline
        instruments.append(DisablePasses(args.disable_pass, passes))
    shown = terminal_stderr() if debug_level(args.debug) == 0 else None  # debug prints its own
    with PassProgress(shown, most_pass_runs(passes)) as progress:
        progress.step(f"loading {args.model}")
        model = load_model(resolve_model(args.model))
        if budget is not None or not args.no_numeric:
            check_fits_in_memory(model, f"numeric check of {args.model}")
        numeric_runner = TargetFallback(target)  # the target runs what the reference path lacks
        budget_record = None
        if budget is not None:
            progress.step(f"fitting --max-drift {args.max_drift}")
            probe = DriftProbe(model, args.seed, runner=numeric_runner)
            fit = fit_budget(model, passes, budget, probe)
            if not fit.holds:
                measured = budget.measure(list(fit.drifts))
                raise AsicperfError(
                    f"--max-drift {args.max_drift}: cannot hold, with every layer kept in FP32 "
                    f"the pipeline still reaches {budget.metric} {measured:.6g}"
                )
            passes = scoped(
                passes,
                skip=tuple(layer.node for layer in fit.kept),
                milder=tuple(layer.node for layer in fit.milder),
            )
            budget_record = fit.to_json(budget)
        instruments.append(VerifyAfterEachPass())
        if not args.no_numeric:
            # with a drift bound, a pass the check cannot run leaves the bound unverified
            bounded = budget is not None
            instruments.append(
                NumericCheck(args.seed, runner=numeric_runner, require_checked=bounded)
            )
            progress.step("numeric check: running the input model")
        if args.dump_ir:
            instruments.append(DumpIR(args.dump_ir))
        input_nodes = tuple(node_id(node) for node in model.graph.all_nodes())
        result = run_pipeline(model, passes, [*instruments, progress], debug=args.debug)
        progress.step(f"writing {output}")
        records = result.records
        if records:
            records = (dataclasses.replace(records[0], input_nodes=input_nodes), *records[1:])
        if budget_record is not None:
            records = tuple(
                dataclasses.replace(r, extra={**r.extra, "drift_budget": budget_record})
                if r.pass_name in {p.name for p in passes if is_layer_scoped(p)}
                else r
                for r in records
            )
        save_model(result.model, output)
        write_audit(audit, records)
    # Printed once the progress is gone: while it shows, stdout goes through its console.
    if budget_record is not None:
        kept = ", ".join(k["node"] for k in budget_record["kept_fp32"]) or "none"
        milder = ", ".join(k["node"] for k in budget_record["kept_milder"])
        at_milder = f"; at the pass's milder setting: {milder}" if milder else ""
        print(f"drift budget {args.max_drift}: kept in FP32: {kept}{at_milder}")
    console().print(_summary_table(records))
    for note in _numeric_notes(records):
        print(note)
    print(f"fused ops for {_target_text(target)}")
    print(f"wrote {output} ({result.fingerprint}) and {audit}")
    return 0


def rank_layers(args: argparse.Namespace) -> int:
    spec, target = _bound_pipeline(args)
    passes = parse_straight_pipeline(spec, "passes sensitivity")
    model = load_model(resolve_model(args.model))
    check_fits_in_memory(model, f"sensitivity of {args.model}")
    budget = DriftBudget(args.metric, 0.0)  # only its metric ranks the layers
    probe = DriftProbe(model, args.seed, runner=TargetFallback(target))
    ranking = layer_sensitivity(model, passes, probe, budget)
    if args.json:
        print(json.dumps([layer.to_json() for layer in ranking], indent=2))
        return 0
    ranks = table(
        f"sensitivity to {args.pipeline} for {_target_text(target)} ({args.metric}, worst first)",
        "#",
        "node",
        "op",
        args.metric,
    )
    for rank, layer in enumerate(ranking, start=1):
        measured = budget.measure(list(layer.drifts))
        ranks.add_row(str(rank), layer.node, layer.op_type, f"{measured:.6g}")
    console().print(ranks)
    return 0


def _worst_input_drift(record: PassRecord) -> tuple[str, str, str]:
    """(max abs error over all outputs, then min cosine and min top-1 agreement; or, for a
    model with a vocabulary output, the worst mean KL divergence and min same-top-1 rate of its
    vocabulary outputs) against the input model."""
    if not record.numeric:
        return "-", "-", "-"
    if "vs_input" not in record.numeric:
        return "not checked", "-", "-"
    drifts = record.numeric["vs_input"]
    max_abs = f"{max(d['max_abs'] for d in drifts):.3g}"
    vocabulary = [d for d in drifts if "kl_divergence" in d]
    if vocabulary:
        kl = max(d["kl_divergence"]["mean"] for d in vocabulary)
        return max_abs, f"{kl:.3g}", f"{min(d['top1_agreement'] for d in vocabulary):.4f}"
    cosine = min(d["cosine"] for d in drifts)
    top1 = [d["top1_agreement"] for d in drifts if d.get("top1_agreement") is not None]
    return max_abs, f"{cosine:.7f}", f"{min(top1):.4f}" if top1 else "-"


def _drift_heading(records: Sequence[PassRecord]) -> str:
    """The drift column's heading: a model with a vocabulary output (its records carry KL) is
    read in mean KL divergence, others in cosine."""
    for record in records:
        if record.numeric and any("kl_divergence" in d for d in record.numeric.get("vs_input", ())):
            return "KL mean"
    return "cosine"


def _numeric_notes(records: Sequence[PassRecord]) -> list[str]:
    """A line per pass the numeric check ran off the reference path or could not run, so a
    drift figure says what ran where."""
    return [
        f"numeric check of #{record.seq} {record.pass_name}: {record.numeric['where']}"
        for record in records
        if record.numeric and "where" in record.numeric
    ]


def _pass_cell(record: PassRecord) -> str:
    """The pass's name, with its round in a repeat group and why it did not run."""
    notes = [f"round {record.repeat.round}"] if record.repeat else []
    if record.skipped_by is not None:
        notes.append(f"not run: {record.skipped_by.reason}")
    return f"{record.pass_name} ({'; '.join(notes)})" if notes else record.pass_name


def _summary_table(records: list[PassRecord] | tuple[PassRecord, ...]) -> Table:
    columns = ("#", "pass", "nodes", "changes by rule", "skipped", "ms", "max abs")
    summary = table("pipeline", *columns, _drift_heading(records), "top-1")
    groups = repeat_groups(records)
    if groups:
        summary.caption = "; ".join(f"{r.group}: {r.outcome()}" for r in groups)
    for record in records:
        rules = ", ".join(f"{rule} {n}" for rule, n in record.rule_counts().items()) or "-"
        max_abs, cosine, top1 = _worst_input_drift(record)
        summary.add_row(
            str(record.seq),
            _pass_cell(record),
            f"{record.node_count[0]} → {record.node_count[1]}",
            rules,
            str(len(record.skipped)),
            f"{record.wall_ms:.1f}",
            max_abs,
            cosine,
            top1,
        )
    return summary


def explain_audit(args: argparse.Namespace) -> int:
    records = read_audit(args.audit)
    out = console()
    if args.node:
        chain = trace_origin(records, args.node)
        if not chain:
            if args.node not in audited_node_ids(records):
                inputs = len(records[0].input_nodes)
                absent = (
                    f"not among the input model's {counted(inputs, 'node')}"
                    if inputs
                    else "named by no change or skip"  # an audit from before `input_nodes`
                )
                raise AsicperfError(
                    f"{args.audit}: no node {args.node} in this audit (not created by any pass, "
                    f"{absent})"
                )
            out.print(
                f"{args.node} was not created by any pass: it comes from the pipeline's input model"
            )
            return 0
        for record, change in chain:
            replaced = ", ".join(change.replaces) or "nothing"
            out.print(
                f"{', '.join(change.nodes)} ← [{record.seq} {record.pass_name}] rule "
                f"{change.rule}: {change.reason} (replaces {replaced})"
            )
        originals = _original_ids(chain)
        out.print(f"original nodes: {', '.join(originals)}")
        return 0
    out.print(_summary_table(records))
    for note in _numeric_notes(records):
        out.print(note, markup=False)
    for record in records:
        if not record.changes and not record.skipped:
            continue
        out.print(f"\n[bold]{record.seq} {record.pass_name}[/bold]  {record.out_fingerprint}")
        # A rewrite's removals are listed under its additions (`replaces`), not again.
        adding = {c.rule for c in record.changes if c.kind == ChangeKind.ADDED_NODE}
        changes = [
            c for c in record.changes if c.kind != ChangeKind.REMOVED_NODE or c.rule not in adding
        ]
        for verb, items in (("changed", changes), ("skipped", record.skipped)):
            by_rule: dict[str, list[str]] = {}
            for item in items:
                by_rule.setdefault(item.rule, []).append(_describe_item(item))
            for rule, lines in by_rule.items():
                shown = lines if args.all else lines[:_EXAMPLES]
                out.print(f"  {verb} {rule}: {len(lines)}")
                for line in shown:
                    out.print(f"      {line}", markup=False)
                if len(shown) < len(lines):
                    out.print(f"      … {len(lines) - len(shown)} more (--all lists them)")
    return 0


def _describe_item(item: Change | Skip) -> str:
    """`n415 (replaces n239, n240): reason`; graph-level items are just their reason."""
    where = ", ".join(item.nodes)
    replaces = getattr(item, "replaces", ())
    if replaces:
        where += f" (replaces {', '.join(replaces)})"
    return f"{where}: {item.reason}" if where else item.reason


def _original_ids(chain: list[tuple[PassRecord, Change]]) -> list[str]:
    """The ids at the leaves of a trace: replaced nodes that no pass created."""
    created = {node for _, change in chain for node in change.nodes}
    leaves: list[str] = []
    for _, change in chain:
        leaves += [n for n in change.replaces if n not in created and n not in leaves]
    return leaves
