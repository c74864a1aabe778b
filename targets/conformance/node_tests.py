"""ONNX's own backend node test cases, run on a target through the backend adapter.

A target claims ops (`Capabilities.ops`); this checks the claim against the cases ONNX ships for
each op. The onnx wheel carries the cases as Python (`onnx.backend.test.case.node`), not as the
`data/node` folder, so they are collected in-process. Each case ends as one `NodeTestOutcome`:
pass, fail (wrong outputs or a run that raised, with a one-line reason), error (the model did
not load or compile) or skipped (the target does not claim an op or dtype it uses, or the case
is outside what the toolkit runs: training ops, domains the loader rejects).

ONNX also generates "expanded" cases: the op's function body in place of the op. They are run
and counted, attributed to the op they expand, but they exercise the body's ops, so they never
make that op fail (`failing_ops` reads direct cases only).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import onnx
from onnx.backend.test.case.test_case import TestCase

from ir.errors import first_line
from ir.model_checks import KNOWN_DOMAINS
from ir.proto_walk import graph_protos
from targets.conformance.backend import (
    TargetBackend,
    backend_for,
    claims_gap,
    load_proto,
    op_label,
)
from targets.precision_choice import PrecisionChoice, precision_of

REPORT_SCHEMA = "asicperf.conformance/1"
_TRAINING_DOMAINS = frozenset({"ai.onnx.training", "ai.onnx.preview.training"})
# ml_dtypes types numpy cannot compare with a float tolerance: compared as float32, bfloat16
# with two of its ULPs of relative tolerance (as ONNX's runner does).
_LOW_PRECISION_RTOL = {"bfloat16": 2**-6}
_SLOWEST_SHOWN = 10


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class NodeCase:
    """One ONNX test case with the op it tests (for an expanded case, the op it expands)."""

    case: TestCase
    domain: str
    op_type: str
    expanded: bool

    @property
    def op(self) -> tuple[str, str]:
        return self.domain, self.op_type


@dataclass(frozen=True)
class NodeTestOutcome:
    """How one of ONNX's node test cases ended on the target, and why."""

    name: str
    domain: str
    op_type: str
    expanded: bool
    status: Status
    reason: str | None
    seconds: float
    # What the compile record says the target computed in, and who chose it; None when the
    # case did not compile, or the target records none (it runs the model's type).
    precision: PrecisionChoice | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": op_label(self.domain, self.op_type),
            "expanded": self.expanded,
            "status": str(self.status),
            "reason": self.reason,
            "seconds": round(self.seconds, 4),
            **({"precision": self.precision.description} if self.precision else {}),
        }


@dataclass(frozen=True)
class OpSummary:
    """A claimed op's direct cases (expanded ones excluded) by outcome."""

    domain: str
    op_type: str
    passed: int
    failed: int
    errors: int

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "op": op_label(self.domain, self.op_type),
            "passed": self.passed,
            "total": self.total,
            "failed": self.failed,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class ConformanceReport:
    """Every case's outcome for one target, with the figures the docs quote."""

    target: str
    spec: str  # the target as given: its name, with options if any
    target_version: str
    onnx_version: str
    results: tuple[NodeTestOutcome, ...]
    claimed_ops: int | None  # None: the target claims every op
    seconds: float

    def count(self, status: Status, *, expanded: bool | None = None) -> int:
        return sum(
            1
            for result in self.results
            if result.status == status and (expanded is None or result.expanded == expanded)
        )

    def ran(self, *, expanded: bool | None = None) -> int:
        """Cases run, i.e. not skipped (all, or only expanded / only direct ones)."""
        total = sum(1 for r in self.results if expanded is None or r.expanded == expanded)
        return total - self.count(Status.SKIPPED, expanded=expanded)

    @property
    def pass_rate(self) -> float:
        """Passed cases over cases run (skipped ones excluded); 0 when none ran."""
        ran = self.ran()
        return self.count(Status.PASS) / ran if ran else 0.0

    @property
    def failures(self) -> tuple[NodeTestOutcome, ...]:
        return tuple(r for r in self.results if r.status in (Status.FAIL, Status.ERROR))

    def op_summaries(self) -> tuple[OpSummary, ...]:
        """Each op with at least one direct case run, sorted by (domain, op_type)."""
        counts: dict[tuple[str, str], Counter[Status]] = {}
        for result in self.results:
            if not result.expanded and result.status != Status.SKIPPED:
                counts.setdefault((result.domain, result.op_type), Counter())[result.status] += 1
        return tuple(
            OpSummary(
                domain,
                op_type,
                tally[Status.PASS],
                tally[Status.FAIL],
                tally[Status.ERROR],
            )
            for (domain, op_type), tally in sorted(counts.items())
        )

    def skip_reasons(self) -> Counter[str]:
        return Counter(r.reason or "" for r in self.results if r.status == Status.SKIPPED)

    def precisions(self) -> Counter[str]:
        """The compiled cases by the precision their compile record names, as descriptions
        ("bfloat16 (target default)")."""
        return Counter(r.precision.description for r in self.results if r.precision is not None)

    def target_chosen_precisions(self) -> Counter[str]:
        """The compiled cases the target ran in a precision of its own choosing, by it."""
        chosen = (r.precision for r in self.results if r.precision is not None)
        return Counter(choice.effective for choice in chosen if choice.vendor_default)

    def to_json(self) -> dict[str, Any]:
        slowest = sorted(self.results, key=lambda r: r.seconds, reverse=True)[:_SLOWEST_SHOWN]
        return {
            "schema": REPORT_SCHEMA,
            "target": self.target,
            "spec": self.spec,
            "target_version": self.target_version,
            "onnx_version": self.onnx_version,
            "seconds": round(self.seconds, 1),
            "cases": len(self.results),
            "run": self.ran(),
            "passed": self.count(Status.PASS),
            "failed": self.count(Status.FAIL),
            "errors": self.count(Status.ERROR),
            "skipped": self.count(Status.SKIPPED),
            "pass_rate": round(self.pass_rate, 4),
            "expanded": {
                "run": self.ran(expanded=True),
                "passed": self.count(Status.PASS, expanded=True),
            },
            "claimed_ops": self.claimed_ops,
            "failing_ops": sorted(op_label(*op) for op in failing_ops(self)),
            "ops": [summary.to_json() for summary in self.op_summaries()],
            "failures": [result.to_json() for result in self.failures],
            "skip_reasons": dict(self.skip_reasons().most_common()),
            "precisions": dict(self.precisions().most_common()),
            "slowest": [result.to_json() for result in slowest],
        }


def failing_ops(report: ConformanceReport) -> frozenset[tuple[str, str]]:
    """Claimed (domain, op_type) with a direct case that failed or errored: fix or unclaim."""
    return frozenset((r.domain, r.op_type) for r in report.failures if not r.expanded)


@functools.cache
def node_cases() -> tuple[NodeCase, ...]:
    """All of ONNX's node cases, collected once per process (about 5 s).

    `collect_testcases` fills a module-level list on first import only, so it is called once,
    unfiltered. An expanded case directly follows its op's case and extends its name.
    """
    import onnx.backend.test.case.node as node_module

    with warnings.catch_warnings():  # the generators overflow casts on purpose
        warnings.simplefilter("ignore")
        cases = node_module.collect_testcases()
    found: list[NodeCase] = []
    direct: NodeCase | None = None
    for case in cases:
        if direct is not None and case.name.startswith(f"{direct.case.name}_expanded"):
            found.append(NodeCase(case, direct.domain, direct.op_type, expanded=True))
            continue
        (node,) = case.model.graph.node
        domain = "" if node.domain == "ai.onnx" else node.domain
        direct = NodeCase(case, domain, node.op_type, expanded=False)
        found.append(direct)
    return tuple(found)


def run_node_tests(
    spec: str,
    ops: Iterable[tuple[str, str]] | None = None,
    progress: Callable[[NodeTestOutcome], None] | None = None,
) -> ConformanceReport:
    """Run the node cases of `ops` (default: every op with a case) on the target `spec`
    (a name, or a name with options: `"tvm{cache=false}"`)."""
    backend = backend_for(spec)
    wanted = None if ops is None else frozenset(ops)
    start = time.perf_counter()
    results = []
    for node_case in node_cases():
        if wanted is None or node_case.op in wanted:
            result = run_case(backend, node_case)
            results.append(result)
            if progress is not None:
                progress(result)
    claimed = backend.target.capabilities().ops
    return ConformanceReport(
        target=backend.target.name,
        spec=spec,
        target_version=backend.target.info().version,
        onnx_version=onnx.__version__,
        results=tuple(results),
        claimed_ops=None if claimed is None else len(claimed),
        seconds=time.perf_counter() - start,
    )


def run_case(backend: type[TargetBackend], node_case: NodeCase) -> NodeTestOutcome:
    """One case, start to end; any exception becomes the case's recorded outcome."""
    start = time.perf_counter()
    precision: PrecisionChoice | None = None  # known once the case compiles

    def result(status: Status, reason: str | None = None) -> NodeTestOutcome:
        seconds = time.perf_counter() - start
        return NodeTestOutcome(
            node_case.case.name,
            node_case.domain,
            node_case.op_type,
            node_case.expanded,
            status,
            reason,
            seconds,
            precision,
        )

    case = node_case.case
    out_of_scope = _out_of_scope(case.model)
    if out_of_scope is not None:
        return result(Status.SKIPPED, out_of_scope)
    try:
        model = load_proto(case.model)
    except Exception as error:  # the loader's checks, or anything a malformed case trips
        return result(Status.ERROR, f"toolkit loader: {first_line(error)}")
    gap = claims_gap(backend.target, model)
    if gap is not None:
        return result(Status.SKIPPED, gap)
    try:
        compiled = backend.compile_ir(model)
    except Exception as error:  # a target's compile, whatever it raises
        return result(Status.ERROR, f"compile: {first_line(error)}")
    precision = precision_of(compiled.record.extra)
    try:
        rep = backend.load(compiled)
    except Exception as error:  # a target's load, whatever it raises
        return result(Status.ERROR, f"load: {first_line(error)}")
    for inputs, expected in case.data_sets or ():
        try:
            outputs = rep.run([_array(value) for value in inputs])
        except Exception as error:  # a target's run, whatever it raises
            return result(Status.FAIL, f"run: {first_line(error)}")
        mismatch = outputs_mismatch([_array(value) for value in expected], outputs, case)
        if mismatch is not None:
            return result(Status.FAIL, mismatch)
    return result(Status.PASS)


def _out_of_scope(model: onnx.ModelProto) -> str | None:
    """Why the toolkit does not run this case at all, on any target, or None."""
    for _, graph in graph_protos(model.graph, None):
        for node in graph.node:
            if node.domain in _TRAINING_DOMAINS:
                return f"training op {node.domain}::{node.op_type}"
            if node.domain not in KNOWN_DOMAINS:
                return f"domain '{node.domain}' is not one the toolkit loads"
    return None


def _array(value: Any) -> Any:
    """A case's value as the backend API passes it: arrays, lists (sequences), None."""
    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    if isinstance(value, list):
        return [_array(item) for item in value]
    return value if value is None else np.asarray(value)


def outputs_mismatch(expected: Sequence[Any], actual: Sequence[Any], case: TestCase) -> str | None:
    """The first way `actual` differs from `expected`, as one line, or None when they match.

    ONNX's runner rules: same count, shapes and dtypes; strings, bools and integers exact;
    floats within the case's rtol/atol (NaN matches NaN).
    """
    if len(actual) != len(expected):
        return f"{len(actual)} outputs, expected {len(expected)}"
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        problem = _value_mismatch(want, got, case.rtol, case.atol)
        if problem is not None:
            return f"output {index}: {problem}"
    return None


def _value_mismatch(want: Any, got: Any, rtol: float, atol: float) -> str | None:
    if want is None:
        return None if got is None else f"got {_kind(got)}, expected {_kind(want)}"
    if isinstance(want, list):
        if not isinstance(got, list | tuple) or len(got) != len(want):
            return f"got {_kind(got)}, expected {_kind(want)}"
        for index, (want_item, got_item) in enumerate(zip(want, got, strict=True)):
            problem = _value_mismatch(want_item, got_item, rtol, atol)
            if problem is not None:
                return f"item {index}: {problem}"
        return None
    if not isinstance(got, np.ndarray):
        return f"got {_kind(got)}, expected {_kind(want)}"
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    if want.dtype.kind in "OSU":  # strings: object arrays either way, compared by value
        return _differ_message(np.asarray(got != want), "exact match required")
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    if want.dtype.kind in "biu":
        return _differ_message(np.asarray(got != want), "exact match required")
    rtol = max(rtol, _LOW_PRECISION_RTOL.get(want.dtype.name, 0.0))
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    differ = ~np.isclose(got64, want64, rtol=rtol, atol=atol, equal_nan=True)
    if not differ.any():
        return None
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf (and so match)
        worst = np.max(np.abs(got64 - want64)[differ])
    return _differ_message(differ, f"max abs diff {worst:.3g}; rtol {rtol:g}, atol {atol:g}")


def _differ_message(differ: np.ndarray, detail: str) -> str | None:
    if not differ.any():
        return None
    return f"{int(differ.sum())}/{differ.size} values differ ({detail})"


def _kind(value: Any) -> str:
    if value is None:
        return "None (empty optional)"
    if isinstance(value, list | tuple):
        return f"a sequence of {len(value)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} tensor"
    return type(value).__name__
