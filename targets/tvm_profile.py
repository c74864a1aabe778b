"""The Relax VM's calls, timed one by one, as the `tvm` target's per-layer profile.

TVM 0.27's ONNX frontend keeps no node names, so a call is mapped back by what it computes and
what it reads. The model TVM built is the one the target lowered (`targets.tvm_compiler.lower`);
its nodes (`LoweredNode`) are kept on the compiled artifact, each with the ids of the compiled
model's nodes it stands for (itself, or through the lowering's `replaces` the nodes a fused
BatchNorm or a recognized LayerNorm replaced).

A compiled function is named after the Relax ops it fuses (`fused_conv2d1_add1_relu1_prepacked`:
conv2d, add, relu), and each ONNX op converts to a known sequence of them (`expected_ops`: a
Conv with a bias is conv2d then add). The calls' ops, in call order, are matched against the
lowered nodes whose inputs are ready, one node's ops at a time. Call order is not the graph's
order (TVM places a fused function where its inputs are ready, so independent branches
interleave), so a node only matches a call that reads what the node reads: the instrument
records each call's tensor addresses (outputs last, TVM's destination-passing convention), so
each call's inputs are traced to the call that last wrote them, or to a graph input. Views
(Reshape, Flatten, Unsqueeze with no call of their own) pass their input's writer on. A
transpose no node asks for is a layout change of the CPU pipeline's NHWC convolutions: a call
that only does that keeps its time with no nodes and is seen through like a view. A variadic
op's input broadcasts, which TVM fuses into the functions that compute its inputs, count for
that op.

At the first call that cannot be explained, the mapping stops: that call and every later one
keep their time with no nodes (a wrong node is worse than none). A function with several outputs
is followed by its last one only, so a consumer of another of its outputs stops the mapping too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ir.node_ids import node_id
from targets.profiling import LayerTiming, TargetProfile
from targets.tvm_schedules.profile import ProfiledRun
from targets.tvm_schedules.winograd import (
    INPUT_BLOCK,
    OUTPUT_BLOCK,
    WINOGRAD_ALGORITHM,
    WINOGRAD_FLOP_SCALE,
)

if TYPE_CHECKING:
    import numpy as np
    import onnx_ir as oir

    from passes.audit import PassRecord
    from targets.tvm_compiler import TvmSession

_SOURCE = "TVM Relax VM instrument"
_PREPACKED = "_prepacked"  # a function whose weights were packed at compile time
# Prefixes TVM's computes carry (`tir_sigmoid`, `fast_erf`): the op is what follows.
_COMPUTE_PREFIXES = ("tir_", "fast_")
# ONNX ops whose output may be a view of their input (no call of their own), with the op they
# run as when they do get one.
_VIEWS = {
    "Reshape": "reshape",
    "Flatten": "reshape",
    "Unsqueeze": "expand_dims",
    "Squeeze": "squeeze",
}
_NO_CALL = frozenset({"Identity", "Dropout"})
# One Relax op each.
_ONE_OP = {
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Exp": "exp",
    "Log": "log",
    "Erf": "erf",
    "Sqrt": "sqrt",
    "Neg": "negative",
    "Abs": "abs",
    "Add": "add",
    "Sub": "subtract",
    "Mul": "multiply",
    "Div": "divide",
    "Pow": "power",
    "Equal": "equal",
    "Less": "less",
    "Greater": "greater",
    "Where": "where",
    "Cast": "cast",
    "MatMul": "matmul",
    "LayerNormalization": "layer_norm",
    "MaxPool": "max_pool2d",
    "AveragePool": "avg_pool2d",
    "GlobalAveragePool": "mean",
    "ReduceMean": "mean",
    "ReduceSum": "sum",
    "ReduceMax": "max",
    "Concat": "concatenate",
    "Slice": "strided_slice",
    "Split": "split",
    "Transpose": "transpose",
    "Expand": "broadcast_to",
}
# Ops TVM decomposes into several (inference BatchNorm, LRN as an average pool over channels).
_DECOMPOSED = {
    "BatchNormalization": ("subtract", "divide", "multiply", "add"),
    "LRN": (
        "multiply",
        "expand_dims",
        "avg_pool3d",
        "squeeze",
        "multiply",
        "add",
        "power",
        "divide",
    ),
}
# Variadic ops and the reduction their stacked inputs go through.
_VARIADIC = {"Sum": "sum", "Max": "max", "Min": "min", "Mean": "mean"}
_BROADCAST = "broadcast_to"
_LAYOUT = "transpose"  # what a layout change runs as
# The VM's own shape computations (`VMShapeLower`) for symbolic dims: no node's work.
_SHAPE_FUNCTION = re.compile(r"shape_func\d*")
_INPUT = -1  # values are written by calls (their index) or graph input k (`_INPUT - k`)


@dataclass(frozen=True)
class LoweredNode:
    """A node of the model TVM built: its id there, its op, the values it reads that are not
    constants and those it writes (by name), how many inputs it has, and `compiled_ids`, the
    nodes of the compiled model it stands for. `folded`: all its inputs are constants, so TVM
    computes it at compile time."""

    id: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_count: int
    compiled_ids: tuple[str, ...]
    folded: bool


def lowered_nodes(
    lowered: oir.Model, records: Sequence[PassRecord], compiled: oir.Model
) -> tuple[LoweredNode, ...]:
    """`lowered`'s top-level nodes in graph order, each traced back to `compiled`'s ids through
    the `replaces` of the nodes that `records` (the lowering's passes) added."""
    replaced = {
        change.nodes[0]: change.replaces
        for record in records
        for change in record.changes
        if change.replaces and len(change.nodes) == 1
    }
    known = {node_id(node) for node in compiled.graph}
    names: dict[int, str] = {}

    def name(value: oir.Value) -> str:  # unnamed values get a name of their own
        return value.name or names.setdefault(id(value), f"#{len(names)}")

    constant = {name(v) for v in lowered.graph.initializers.values()}
    nodes = []
    for node in lowered.graph:
        present = [v for v in node.inputs if v is not None]
        reads = tuple(name(v) for v in present if name(v) not in constant)
        folded = not reads
        writes = tuple(name(v) for v in node.outputs)
        if folded:
            constant.update(writes)
        own = node_id(node)
        nodes.append(
            LoweredNode(
                own,
                node.op_type,
                reads,
                writes,
                len(present),
                _compiled_ids(own, known, replaced),
                folded,
            )
        )
    return tuple(nodes)


def _compiled_ids(
    wanted: str, known: set[str], replaced: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """`wanted` if the compiled model has it, else what the nodes it replaced trace to."""
    if wanted in known:
        return (wanted,)
    found: list[str] = []
    for earlier in replaced.get(wanted, ()):
        found += [i for i in _compiled_ids(earlier, known, replaced) if i not in found]
    return tuple(found)


def expected_ops(node: LoweredNode) -> tuple[tuple[str, ...], ...]:
    """The Relax op sequences TVM's frontend converts `node` to, longest first; () for an op
    this table does not know. An empty sequence: no call of its own."""
    op = node.op_type
    if node.folded or op in _NO_CALL:
        return ((),)
    if op in _VIEWS:
        return ((_VIEWS[op],), ())
    if op in ("Conv", "ConvTranspose"):
        suffix = "_transpose" if op == "ConvTranspose" else ""
        bias = ("add",) if node.input_count == 3 else ()
        direct = tuple((f"conv{d}d{suffix}", *bias) for d in (2, 1, 3))
        return (*direct, (INPUT_BLOCK, "matmul", OUTPUT_BLOCK, *bias)) if not suffix else direct
    if op == "Gemm":  # alpha, a non-constant transposed operand, beta: each its own op
        bias = ("multiply", "add") if node.input_count == 3 else ()
        heads = (("multiply", "transpose"), ("transpose",), ("multiply",), ())
        tails = (bias, bias[1:]) if bias else ((),)
        return tuple((*head, "matmul", *tail) for head in heads for tail in tails)
    if op == "Gather":  # negative indices wrapped first, unless the indices are constant
        return (("less", "add", "where", "take"), ("take",))
    if op == "Clip":
        return (("maximum", "minimum"),)
    if op in _DECOMPOSED:
        return (_DECOMPOSED[op],)
    if op == "Softmax":  # before opset 13, on its input flattened to 2-D and reshaped back
        return (("softmax", "reshape"), ("softmax",))
    if op in _VARIADIC:  # each input broadcast (often in its producer's call), stacked, reduced
        broadcasts = range(node.input_count, -1, -1)
        return tuple((*(_BROADCAST,) * n, "stack", _VARIADIC[op]) for n in broadcasts)
    return ((_ONE_OP[op],),) if op in _ONE_OP else ()


def _vocabulary() -> tuple[str, ...]:
    """Every op the table expects, longest first (so `max_pool2d` is read before `max`)."""
    ops = {*_ONE_OP.values(), *_VIEWS.values(), *_VARIADIC.values(), _BROADCAST, "stack"}
    ops |= {"take", "less", "maximum", "minimum", "softmax"}
    ops |= {op for sequence in _DECOMPOSED.values() for op in sequence}
    ops |= {f"conv{d}d{t}" for d in (1, 2, 3) for t in ("", "_transpose")}
    ops |= {INPUT_BLOCK, OUTPUT_BLOCK, "matmul"}
    return tuple(sorted(ops, key=len, reverse=True))


_OPS = _vocabulary()


def function_ops(function: str) -> tuple[str, ...]:
    """The Relax ops a compiled function's name lists: `fused_conv2d1_add1_relu1_prepacked` ->
    (conv2d, add, relu); TVM numbers repeated names and prefixes some computes (`tir_sigmoid`,
    `fast_erf`). A part the table does not know is kept as it is (it then matches no node)."""
    rest = function.removeprefix("fused_").removesuffix(_PREPACKED)
    ops = []
    while rest:
        for prefix in _COMPUTE_PREFIXES:
            rest = rest.removeprefix(prefix)
        known = (re.match(rf"({re.escape(op)})\d*(?:_|$)", rest) for op in _OPS)
        found = next((m for m in known if m is not None), None)
        if found is None:
            found = re.match(r"([^_]*?)\d*(?:_|$)", rest)
            assert found is not None  # the pattern matches any text
        ops.append(found.group(1))
        rest = rest[found.end() :]
    return tuple(op for op in ops if op)


@dataclass(frozen=True)
class _Op:
    """One op of one call, in call order."""

    call: int
    op: str


class _Mapping:
    """The matching state: which call wrote each value the nodes have produced so far, and
    which calls each call read from (see the module docstring)."""

    def __init__(
        self, nodes: Sequence[LoweredNode], inputs: Sequence[str], reads: Sequence[set[int]]
    ) -> None:
        self.pending = list(nodes)
        self.writer: dict[str, int] = {name: _INPUT - k for k, name in enumerate(inputs)}
        self.reads = reads
        self.passed_through: dict[int, set[int]] = {}
        self.nodes_of: dict[int, list[str]] = {}

    def ready(self, call: int) -> Iterator[LoweredNode]:
        """Pending nodes whose inputs are all produced: first those reading a value this call
        produced, then the rest in graph order."""
        ready = [n for n in self.pending if all(v in self.writer for v in n.inputs)]
        inside = [n for n in ready if any(self.writer[v] == call for v in n.inputs)]
        yield from inside
        yield from (n for n in ready if n not in inside)

    def read_by(self, call: int) -> set[int]:
        """The writers `call` reads, seen through the layout changes passed through."""
        sources = {call}
        for source in self.reads[call]:
            sources |= self.passed_through.get(source, {source})
        return sources

    def consume(self, node: LoweredNode, calls: Sequence[int], data_from: int | None) -> None:
        """`node` runs in `calls`; its outputs were written by `data_from` (None: constants,
        which no node waits for)."""
        self.pending.remove(node)
        for call in calls:
            self._runs(node, call)
        if data_from is not None:
            self.writer.update(dict.fromkeys(node.outputs, data_from))

    def _runs(self, node: LoweredNode, call: int) -> None:
        """`call` executes (some of) `node`."""
        nodes = self.nodes_of.setdefault(call, [])
        nodes += [i for i in node.compiled_ids if i not in nodes]

    def absorb_broadcast(self, call: int) -> bool:
        """A variadic op's inputs are each broadcast first, and TVM fuses each broadcast into
        the function that computes that input: a `broadcast_to` no node matched belongs to
        the pending variadic node that reads what `call` writes (True when there is one)."""
        for node in self.pending:
            if node.op_type in _VARIADIC and any(self.writer.get(v) == call for v in node.inputs):
                self._runs(node, call)
                return True
        return False

    def match(self, ops: Sequence[_Op], at: int) -> int | None:
        """Consume the ready node whose ops start at `ops[at]` and that reads only what that
        call reads; the position after its ops, or None when no node fits."""
        call = ops[at].call
        sources = self.read_by(call)
        for node in self.ready(call):
            if any(self.writer[v] not in sources for v in node.inputs):
                continue
            for sequence in expected_ops(node):
                end = at + len(sequence)
                if sequence and tuple(op.op for op in ops[at:end]) == sequence:
                    self.consume(node, sorted({op.call for op in ops[at:end]}), ops[end - 1].call)
                    return end
        return None

    def pass_view(self, call: int) -> bool:
        """Consume one ready node that may have no call of its own: its outputs are its first
        input's (constants, when it reads none). False when there is none."""
        for node in self.ready(call):
            if () in expected_ops(node):
                self.consume(node, (), self.writer[node.inputs[0]] if node.inputs else None)
                return True
        return False


def map_calls(
    nodes: Sequence[LoweredNode],
    inputs: Sequence[str],
    input_addresses: Sequence[int],
    run: ProfiledRun,
) -> list[tuple[str, ...]]:
    """The compiled model's node ids each call of `run` executes, in call order; () for a call
    not mapped. `inputs`: the graph inputs' names, `input_addresses` their tensors'."""
    written = {address: _INPUT - k for k, address in enumerate(input_addresses)}
    reads: list[set[int]] = []
    for index, call in enumerate(run.calls):
        reads.append({written[a] for a in call.tensors[:-1] if a in written})
        if call.tensors:
            written[call.tensors[-1]] = index
    state = _Mapping(nodes, inputs, reads)
    ops = [
        _Op(index, op)
        for index, call in enumerate(run.calls)
        if _SHAPE_FUNCTION.fullmatch(call.function) is None
        for op in function_ops(call.function)
    ]
    stopped_at = len(run.calls)
    at = 0
    while at < len(ops):
        after = state.match(ops, at)
        if after is not None:
            at = after
            continue
        call = ops[at].call
        if ops[at].op == _BROADCAST and state.absorb_broadcast(call):
            at += 1
            continue
        call_ops = [op.op for op in ops if op.call == call]
        first = at == 0 or ops[at - 1].call != call
        if first and set(call_ops) == {_LAYOUT}:
            state.passed_through[call] = state.read_by(call) - {call}
            at += len(call_ops)
            continue
        if ops[at].op == _LAYOUT:  # a layout change fused into the call
            at += 1
            continue
        if not state.pass_view(call):
            stopped_at = call
            break
    return [
        tuple(state.nodes_of.get(index, ())) if index < stopped_at else ()
        for index in range(len(run.calls))
    ]


def profile_tvm(session: TvmSession, feeds: Mapping[str, np.ndarray], runs: int) -> TargetProfile:
    """One warm-up run, then `runs` runs; a layer per call site (a function called several
    times in a run is several layers, `name#k` for its k-th call), its time per run; mapped
    from the first profiled run's calls."""
    addresses, profiled = session.profile_runs(feeds, runs + 1)
    profiled = profiled[1:]
    nodes = map_calls(session.lowered, session.input_names, addresses, profiled[0])
    sites = [_call_sites(run) for run in profiled]
    order = list(dict.fromkeys(site for run in sites for site in run))
    counts = Counter(function for function, _ in order)
    mapped = {site: nodes[index] for index, site in enumerate(sites[0])}
    calls = [
        LayerTiming(
            function if counts[function] == 1 else f"{function}#{k}",
            _kind(function),
            mapped.get((function, k), ()),
            tuple(run.get((function, k), 0.0) * 1e3 for run in sites),
            {"function": function},
        )
        for function, k in order
    ]
    layers = tuple(_one_layer(group) for group in _sharing_nodes(calls))
    return TargetProfile(_SOURCE, layers, tuple(run.seconds * 1e3 for run in profiled))


def _sharing_nodes(calls: Sequence[LayerTiming]) -> list[list[LayerTiming]]:
    """The calls grouped so that calls executing a node in common are one layer (a Winograd
    convolution's three calls all compute its Conv): each node's work is then counted once.
    Unmapped calls stay alone. Groups in the order of their first call."""
    groups: list[list[LayerTiming]] = []
    owner: dict[str, int] = {}
    for call in calls:
        found = next((owner[n] for n in call.nodes if n in owner), None)
        if found is None:
            found = len(groups)
            groups.append([])
        groups[found].append(call)
        owner.update(dict.fromkeys(call.nodes, found))
    return groups


def _one_layer(calls: list[LayerTiming]) -> LayerTiming:
    """The calls as one layer: names joined by `+`, the nodes of all, the times summed per run;
    a Winograd convolution says so, and by how much fewer multiply-adds it does than the op
    table counts for the Conv (the profile's roofline judges it on those)."""
    if len(calls) == 1:
        return calls[0]
    functions = [call.detail["function"] for call in calls]
    detail = {"function": "+".join(functions)}
    if any(INPUT_BLOCK in function for function in functions):
        detail |= {"algorithm": WINOGRAD_ALGORITHM, "flop_scale": f"{WINOGRAD_FLOP_SCALE:.6f}"}
    return LayerTiming(
        "+".join(call.name for call in calls),
        "+".join(call.kind for call in calls),
        tuple(dict.fromkeys(n for call in calls for n in call.nodes)),
        tuple(sum(times) for times in zip(*(call.times_ms for call in calls), strict=True)),
        detail,
    )


def _call_sites(run: ProfiledRun) -> dict[tuple[str, int], float]:
    """Each call's seconds by (function, which of its calls in the run, from 1)."""
    seen: dict[str, int] = {}
    sites = {}
    for call in run.calls:
        seen[call.function] = seen.get(call.function, 0) + 1
        sites[(call.function, seen[call.function])] = call.seconds
    return sites


def _kind(function: str) -> str:
    """The function's name without TVM's numbering and packing suffix:
    `fused_conv2d1_add1_relu1_prepacked` -> `fused_conv2d_add_relu`."""
    return re.sub(r"(?<=[a-z])\d+(?=_|$)", "", function.removesuffix(_PREPACKED))
