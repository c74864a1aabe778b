"""`runner bench --level op`: kernels of every registered provider, checked against each op's
numpy reference, timed by the adaptive method (docs/methodology.md) and placed under the
roofline of the device they ran on."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import Progress

from ir.errors import AsicperfError
from ir.files import check_output_dir
from microbench.bench import CaseNotRun, CaseOutcome, CaseResult, run_cases
from microbench.ops import OPS, BenchCase, parse_case
from microbench.providers.base import Provider
from microbench.providers.registry import discover, get_provider
from microbench.roofline import Roofline, host_roofline, spec_roofline
from microbench.suite import Suite, SuiteCase, load_suite, shipped_suites
from microbench.timing import TimingPolicy
from runner.bench_output import print_result, progress_bars
from runner.report.environment import environment
from runner.report.show import op_renderables, unsupported_groups
from runner.results.files import RESULT_FILE, write_result
from runner.results.op import (
    CaseNotRunRecord,
    CaseResultRecord,
    OpResult,
    RooflineRecord,
    TimingPolicyRecord,
)
from targets.hardware.database import get as hardware_spec
from targets.hardware.host import host_profile

DEFAULT_SUITE = "default"
_FLUSH_FALLBACK_BYTES = 512 * 2**20


def register_options(parser: argparse.ArgumentParser) -> None:
    """The op-level options of `runner bench` (it owns --out, --json and --seed)."""
    group = parser.add_argument_group("--level op")
    group.add_argument("--provider", metavar="P[,P]", help="kernel providers; default: all")
    group.add_argument("--op", metavar="OP[,OP]", help=f"ops ({', '.join(OPS)})")
    group.add_argument("--dtype", metavar="D", help="fp32, bf16, int8, fp16")
    group.add_argument("--shape", metavar="MxNxK", help="one shape, in the op's spec; needs --op")
    group.add_argument(
        "--suite",
        metavar="FILE|NAME",
        help=f"a .toml suite or a shipped one ({', '.join(shipped_suites())}); "
        f"default: {DEFAULT_SUITE}",
    )
    group.add_argument("--max-time", type=float, default=5.0, metavar="S", help="per case")
    group.add_argument("--min-time", type=float, default=0.1, metavar="S", help="per case")
    group.add_argument("--noise", type=float, default=0.05, help="target IQR/median")
    group.add_argument(
        "--flush-cache", action="store_true", help="evict the caches before each sample"
    )


def run_op_bench(args: argparse.Namespace) -> int:
    suite = _suite(args)
    folder = check_output_dir(
        Path(args.out) if args.out else Path("bench-results") / f"op-{suite.name}", "--out"
    )
    providers = _providers(args.provider)
    plan = _plan(suite, providers, args)
    policy = _policy(args)
    rooflines: dict[str, Roofline] = {}
    started = time.time()
    with progress_bars(quiet=args.json, count=True) as progress:
        bar = _Bar(progress, sum(len(p) for _, p in plan))
        outcomes = list(
            run_cases(plan, policy, lambda p: _roofline(p, policy, rooflines), bar, seed=args.seed)
        )
    seconds = time.time() - started
    result = _result(suite, policy, rooflines, outcomes, args, seconds)
    write_result(folder / RESULT_FILE, result)
    print_result(result, op_renderables(result), folder, as_json=args.json)
    failed = result.failed
    if failed:
        print(
            f"runner: {len(failed)} case(s) failed their check; see {folder / RESULT_FILE}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _suite(args: argparse.Namespace) -> Suite:
    """The suite asked for, or one built from --op/--dtype/--shape; --op and --dtype also
    filter a suite."""
    if args.shape is not None and (args.op is None or args.suite is not None):
        raise AsicperfError("--shape needs --op (and no --suite): it gives that op's shape")
    ops = _names(args.op, "--op")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise AsicperfError(f"unknown op {unknown[0]!r} (known: {', '.join(OPS)})")
    if args.shape is not None:
        try:
            cases = [
                SuiteCase(parse_case(op, args.dtype or OPS[op].dtypes[0], args.shape), None)
                for op in ops
            ]
        except ValueError as error:
            raise AsicperfError(str(error)) from None
        return Suite(_slug(f"{'-'.join(ops)}-{args.shape}"), "from the command line", tuple(cases))
    suite = load_suite(args.suite or DEFAULT_SUITE)
    kept = tuple(
        entry
        for entry in suite.cases
        if (not ops or entry.case.op in ops) and args.dtype in (None, entry.case.dtype)
    )
    if not kept:
        raise AsicperfError(
            f"suite '{suite.name}' has no case with op {args.op or 'any'} and dtype "
            f"{args.dtype or 'any'}"
        )
    name = suite.name if not ops else f"{suite.name}-{'-'.join(ops)}"
    return Suite(name, suite.description, kept)


def _names(text: str | None, option: str) -> list[str]:
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if text is not None and not names:
        raise AsicperfError(f"{option} '{text}': expected a comma-separated list of names")
    return names


def _providers(text: str | None) -> list[Provider]:
    """The named providers, or every registered one that loads (a broken plugin is named on
    stderr and left out)."""
    if text is not None:
        return [get_provider(name) for name in _names(text, "--provider")]
    providers = []
    for name, entry in discover().items():
        if entry.plugin_type is None:
            print(f"runner: provider '{name}' left out: {entry.load_error}", file=sys.stderr)
        else:
            providers.append(entry.plugin_type())
    return providers


def _plan(
    suite: Suite, providers: Sequence[Provider], args: argparse.Namespace
) -> list[tuple[BenchCase, list[Provider]]]:
    """Each case with its providers: the suite's restriction, intersected with --provider."""
    by_name = {provider.name: provider for provider in providers}
    plan = []
    for entry in suite.cases:
        names = entry.providers or tuple(by_name)
        if entry.providers is not None and args.provider is None:
            for name in names:
                if name not in by_name:  # the suite names a provider discovery left out
                    by_name[name] = get_provider(name)
        chosen = [by_name[name] for name in names if name in by_name]
        if chosen:
            plan.append((entry.case, chosen))
    if not plan:
        raise AsicperfError(f"suite '{suite.name}' names none of the providers {args.provider}")
    reasons = [
        (case, provider.name, provider.unsupported_reason(case))
        for case, chosen in plan
        for provider in chosen
    ]
    if all(reason is not None for _, _, reason in reasons):
        groups = unsupported_groups(
            CaseNotRunRecord(op=case.op, provider=name, dtype=case.dtype, reason=reason)
            for case, name, reason in reasons
            if reason is not None
        )
        raise AsicperfError(f"nothing to run: {'; '.join(groups)}")
    return plan


def _policy(args: argparse.Namespace) -> TimingPolicy:
    flush = 0
    if args.flush_cache:
        llc_mib = host_profile().measurement.llc_mib
        flush = 2 * llc_mib * 2**20 if llc_mib else _FLUSH_FALLBACK_BYTES
    try:
        return TimingPolicy(
            min_time_s=args.min_time,
            max_time_s=args.max_time,
            target_noise=args.noise,
            flush_cache_bytes=flush,
        )
    except ValueError as error:
        raise AsicperfError(f"timing: {error}") from None


def _roofline(provider: Provider, policy: TimingPolicy, rooflines: dict[str, Roofline]) -> Roofline:
    """The roofline of the provider's device, measured or looked up once per run; with the
    caches flushed before every sample, no working set is served from a cache."""
    if provider.hardware not in rooflines:
        roofline = (
            host_roofline(host_profile())
            if provider.hardware == "host"
            else spec_roofline(hardware_spec(provider.hardware))
        )
        if policy.flush_cache_bytes:
            roofline = dataclasses.replace(roofline, cache_bytes=None)
        rooflines[provider.hardware] = roofline
    return rooflines[provider.hardware]


class _Bar:
    """One bar over all (case, provider) pairs, naming the one running."""

    def __init__(self, progress: Progress, total: int) -> None:
        self._progress = progress
        self._task = progress.add_task("op benchmarks", total=total)

    def started(self, case: BenchCase, provider: str) -> None:
        self._progress.update(self._task, description=f"{case} on {provider}")

    def finished(self, outcome: CaseOutcome) -> None:
        self._progress.advance(self._task)


def _result(
    suite: Suite,
    policy: TimingPolicy,
    rooflines: dict[str, Roofline],
    outcomes: Sequence[CaseOutcome],
    args: argparse.Namespace,
    seconds: float,
) -> OpResult:
    """The op result; microbench's types become records through the JSON they write, so
    microbench stays free of runner's records."""
    not_run = [o for o in outcomes if isinstance(o, CaseNotRun)]
    return OpResult(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        environment=environment(args.command_line, args.seed),
        suite=suite.name,
        seconds=round(seconds, 3),
        policy=TimingPolicyRecord.from_json(dataclasses.asdict(policy), "policy"),
        rooflines={
            hardware: RooflineRecord.from_json(roofline.to_json(), "roofline")
            for hardware, roofline in rooflines.items()
        },
        cases=tuple(
            CaseResultRecord.from_json(o.to_json(), "case")
            for o in outcomes
            if isinstance(o, CaseResult)
        ),
        unsupported=tuple(
            CaseNotRunRecord.from_json(o.to_json(), "case") for o in not_run if not o.failed
        ),
        failed=tuple(CaseNotRunRecord.from_json(o.to_json(), "case") for o in not_run if o.failed),
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)
