"""mixed-precision: run the matrix products in bfloat16 (or float16), everything else in FP32.

MatMul, Gemm and Conv (and com.microsoft FusedConv/FusedGemm, float16 only) carry nearly all
the arithmetic and tolerate 8 significant bits; Softmax, normalizations and reductions sum many
terms or exponentiate and do not, so they stay FP32 and so does an allowed node that feeds one
directly (its output would reach them rounded). Casts go in at the boundaries only: consecutive
low-precision nodes pass low-precision tensors to each other, weights are converted offline
(round-to-nearest-even), and cast chains that change nothing are removed. Graph inputs and
outputs keep their FP32 types. Only the main graph is rewritten, not subgraphs.

What ONNX can say about accumulation: nothing. MatMul, Gemm and Conv have no accumulator-type
attribute; their output has the input type, and how the sums are carried is the runtime's
choice (hardware bfloat16 dot products, e.g. AVX-512 BF16, accumulate in FP32 and round once).
Which op accepts the type is read from its ONNX schema at the model's opset: MatMul and Gemm take
bfloat16 from opset 13, Conv only from opset 22 (float16 always). Runtimes differ in which of
those they have kernels for; the reference path (`ir.reference`) has no bfloat16 MatMul, Gemm
or Conv, so bfloat16 drift is measured through `ir.low_precision.emulate_low_precision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx.defs
import onnx_ir as oir

from ir.low_precision import round_to
from ir.names import unique_name
from ir.node_ids import describe_node
from passes.audit import ChangeKind
from passes.base import Pass, PassLog
from passes.contracts import CONSTANT_WEIGHTS
from passes.layer_scope import LayerScopeConfig
from passes.rewrite import constant_array, default_opset, forward_uses, output_handover_blocker

LOW_PRECISION_RULE = "low-precision"
WEIGHT_RULE = "convert-weight"
CAST_RULE = "insert-cast"
REDUNDANT_RULE = "redundant-cast"
DENY_RULE = "deny"

_DTYPES = {"bfloat16": oir.DataType.BFLOAT16, "float16": oir.DataType.FLOAT16}
_FLOAT = oir.DataType.FLOAT
# (narrow, wide): every value of the narrow type is exactly representable in the wide one, so
# Cast(narrow -> wide -> narrow) is the identity.
_EXACT_WIDENING = frozenset(
    {
        (oir.DataType.BFLOAT16, oir.DataType.FLOAT),
        (oir.DataType.FLOAT16, oir.DataType.FLOAT),
        (oir.DataType.BFLOAT16, oir.DataType.DOUBLE),
        (oir.DataType.FLOAT16, oir.DataType.DOUBLE),
        (oir.DataType.FLOAT, oir.DataType.DOUBLE),
    }
)
MICROSOFT = "com.microsoft"
# com.microsoft fused ops (from fuse-activation), whose every input and output has one type:
# the low-precision types their com.microsoft schemas admit (float16, not bfloat16).
MICROSOFT_TYPES: dict[str, frozenset[oir.DataType]] = {
    "FusedConv": frozenset({oir.DataType.FLOAT16}),
    "FusedGemm": frozenset({oir.DataType.FLOAT16}),
}
DEFAULT_ALLOW = ("MatMul", "Gemm", "Conv", "FusedConv", "FusedGemm")
DEFAULT_DENY = (
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
)


@dataclass(frozen=True)
class MixedPrecisionConfig(LayerScopeConfig):
    """`dtype`: the low-precision type. `allow`: ONNX op types switched to it. `deny`: op types
    kept FP32 together with the allowed nodes that feed them; deny wins over allow. `nodes` /
    `skip_nodes` (LayerScopeConfig) limit it to some layers, for sensitivity and drift budgets."""

    dtype: Literal["bfloat16", "float16"] = "bfloat16"
    allow: tuple[str, ...] = DEFAULT_ALLOW
    deny: tuple[str, ...] = DEFAULT_DENY

    def layer_op_types(self) -> frozenset[str]:
        return frozenset(self.allow) - frozenset(self.deny)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be bfloat16 or float16, not '{self.dtype}'")
        for option in ("allow", "deny"):
            known = MICROSOFT_TYPES if option == "allow" else {}
            unknown = [op for op in getattr(self, option) if not (onnx.defs.has(op) or op in known)]
            if unknown:
                raise ValueError(f"unknown op '{unknown[0]}' in {option} (not an ONNX operator)")


class MixedPrecision(Pass):
    """Allowed nodes compute in the low-precision type, with casts only where FP32 meets it."""

    name = "mixed-precision"
    summary = "run MatMul/Gemm/Conv in bfloat16 or float16; casts at the FP32 boundaries"
    config_type = MixedPrecisionConfig
    requires = (CONSTANT_WEIGHTS,)  # weights are rounded offline; a computed one would get a Cast

    def run(self, model: oir.Model, log: PassLog) -> None:
        config: MixedPrecisionConfig = self.config  # type: ignore[assignment]
        rewrite = _Rewrite(model, log, _DTYPES[config.dtype])
        deny = set(config.deny)
        chosen = []
        for node in model.graph:
            if node.domain not in ("", MICROSOFT):
                continue
            if node.op_type in deny and node.domain == "":
                log.skip(
                    [node], rule=DENY_RULE, reason=f"{node.op_type} is on the deny list: kept FP32"
                )
            elif node.op_type in config.allow and (
                node.domain == "" or node.op_type in MICROSOFT_TYPES
            ):
                reason = (
                    rewrite.reason_to_keep(node, deny)
                    if config.in_scope(node)
                    else "outside the layer scope: kept FP32"
                )
                if reason is None:
                    chosen.append(node)
                elif reason:
                    log.skip([node], rule=LOW_PRECISION_RULE, reason=reason)
        rewrite.switch(chosen)
        _remove_redundant_casts(model.graph, log)


class _Rewrite:
    """The switch of a set of nodes to one low-precision type, with its casts and weights."""

    def __init__(self, model: oir.Model, log: PassLog, dtype: oir.DataType) -> None:
        self.graph = model.graph
        self.log = log
        self.dtype = dtype
        self.opset = default_opset(model)
        self.low: dict[oir.Value, oir.Value] = {}  # FP32 value -> its low-precision version

    @property
    def type_name(self) -> str:
        return self.dtype.name.lower()

    def data_values(self, node: oir.Node) -> tuple[list[oir.Value], list[oir.Value]] | None:
        """The inputs and outputs bound to the type of the node's first output in its schema
        (the ones that change type); None when that type cannot be `self.dtype` at this opset.
        com.microsoft ops have no schema in onnx.defs: all their inputs and outputs change."""
        if node.domain == MICROSOFT:
            if self.dtype not in MICROSOFT_TYPES.get(node.op_type, ()):
                return None
            return [v for v in node.inputs if v is not None], list(node.outputs)
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opset)
        except onnx.defs.SchemaError:  # the op is newer than the model's opset
            return None
        param = schema.outputs[0].type_str
        types = [c.allowed_type_strs for c in schema.type_constraints if c.type_param_str == param]
        if not types or f"tensor({self.type_name})" not in types[0]:
            return None
        formal = [p.type_str for p in schema.inputs]
        inputs = [
            value
            for index, value in enumerate(node.inputs)
            if value is not None and formal[min(index, len(formal) - 1)] == param
        ]
        formal_out = [p.type_str for p in schema.outputs]
        outputs = [
            value
            for index, value in enumerate(node.outputs)
            if formal_out[min(index, len(formal_out) - 1)] == param
        ]
        return inputs, outputs

    def reason_to_keep(self, node: oir.Node, deny: set[str]) -> str | None:
        """Why an allowed node stays FP32; "" when it already runs in the type (nothing to say),
        None when it switches."""
        values = self.data_values(node)
        if values is None:
            where = f"in {MICROSOFT}" if node.domain == MICROSOFT else f"at opset {self.opset}"
            return f"{node.op_type} kept FP32: it has no {self.type_name} version {where}"
        inputs, outputs = values
        types = {value.dtype for value in [*inputs, *outputs]}
        if types == {self.dtype}:
            return ""
        odd = next((v for v in [*inputs, *outputs] if v.dtype != _FLOAT), None)
        if odd is not None:
            kind = odd.dtype.name if odd.dtype is not None else "of unknown type"
            return f"{node.op_type} kept FP32: '{odd.name}' is {kind}, not FLOAT"
        for value in outputs:
            for reader in value.consumers():
                if reader.domain == "" and reader.op_type in deny:
                    return (
                        f"{node.op_type} kept FP32: it feeds {describe_node(reader)}, "
                        "on the deny list, whose inputs stay FP32"
                    )
        if self.dtype == oir.DataType.FLOAT16:
            for value in inputs:
                array = constant_array(value)
                if (
                    array is not None
                    and np.isinf(round_to(array, self.dtype)).sum() > np.isinf(array).sum()
                ):
                    return (
                        f"{node.op_type} kept FP32: weight '{value.name}' exceeds "
                        f"float16's range (max |w| = {float(np.abs(array).max()):.4g})"
                    )
        return None

    def switch(self, nodes: list[oir.Node]) -> None:
        chosen = set(nodes)
        for node in nodes:
            inputs, outputs = self.data_values(node)  # type: ignore[misc]
            for value in inputs:
                low = self.low_version(value, chosen)
                for user, index in list(value.uses()):
                    if user is node:
                        user.replace_input_with(index, low)
            for value in outputs:
                value.dtype = self.dtype
            self.log.changed(
                ChangeKind.DTYPE,
                [node],
                rule=LOW_PRECISION_RULE,
                reason=f"{node.op_type} computes in {self.type_name}; ONNX leaves its "
                "accumulation to the runtime and gives its output that type",
            )
        for node in nodes:
            for value in self.data_values(node)[1]:  # type: ignore[index]
                self.widen_for_fp32_readers(node, value, chosen)
        for value, low in self.low.items():
            unread = not value.uses() and not value.is_graph_output()
            if value.is_initializer() and not value.is_graph_input() and unread:
                self.graph.initializers.pop(value.name)
                self.log.changed_graph(
                    rule=WEIGHT_RULE,
                    reason=f"FP32 initializer '{value.name}' removed: only '{low.name}' is read",
                )

    def low_version(self, value: oir.Value, chosen: set[oir.Node]) -> oir.Value:
        """`value` in the low-precision type: itself when a switched node makes it, the source
        of an exact widening Cast, a converted weight, or a new Cast (one per value)."""
        if value.producer() in chosen:
            return value
        source = exact_widening_source(value)
        if source is not None and source.dtype == self.dtype:
            return source
        if value not in self.low:
            array = constant_array(value)
            if array is not None:
                self.low[value] = self.convert_weight(value, array, chosen)
            else:
                self.low[value] = self.insert_cast(value)
        return self.low[value]

    def convert_weight(
        self, value: oir.Value, array: np.ndarray, chosen: set[oir.Node]
    ) -> oir.Value:
        rounded = round_to(array, self.dtype)
        error = float(np.abs(rounded.astype(np.float32) - array).max()) if array.size else 0.0
        name = unique_name(self.graph, f"{value.name}_{self.type_name}")
        low = oir.Value(name=name, const_value=oir.tensor(rounded, name=name))
        low.dtype = self.dtype
        low.shape = oir.Shape(array.shape)
        self.graph.register_initializer(low)
        readers = sorted({user for user, _ in value.uses() if user in chosen}, key=self.graph.index)
        self.log.changed(
            ChangeKind.WEIGHTS,
            readers,
            rule=WEIGHT_RULE,
            reason=f"weight '{value.name}' converted to {self.type_name} offline as '{name}' "
            f"(round-to-nearest-even, max abs rounding error {error:.3g})",
        )
        return low

    def insert_cast(self, value: oir.Value) -> oir.Value:
        cast = oir.node("Cast", [value], {"to": int(self.dtype)})
        low = cast.outputs[0]
        low.name = unique_name(self.graph, f"{value.name}_{self.type_name}")
        low.dtype, low.shape = self.dtype, value.shape
        producer = value.producer()
        if producer is not None:
            self.graph.insert_after(producer, cast)
        else:
            self.graph.insert_before(self.graph.node(0), cast)
        self.log.added(
            cast,
            rule=CAST_RULE,
            reason=f"'{value.name}' cast to {self.type_name} for a {self.type_name} consumer",
        )
        return low

    def widen_for_fp32_readers(
        self, node: oir.Node, value: oir.Value, chosen: set[oir.Node]
    ) -> None:
        """Give the FP32 readers of `value` (and the graph output it may be) a Cast to FP32."""
        readers = [(user, index) for user, index in value.uses() if user not in chosen]
        if not readers and not value.is_graph_output():
            return
        cast = oir.node("Cast", [value], {"to": int(_FLOAT)})
        wide = cast.outputs[0]
        wide.dtype, wide.shape = _FLOAT, value.shape
        self.graph.insert_after(node, cast)
        if value.is_graph_output():
            outputs = self.graph.outputs
            outputs[outputs.index(value)] = wide
            wide.name = value.name
            value.name = unique_name(self.graph, f"{wide.name}_{self.type_name}")
        else:
            wide.name = unique_name(self.graph, f"{value.name}_fp32")
        for user, index in readers:
            user.replace_input_with(index, wide)
        self.log.added(
            cast,
            rule=CAST_RULE,
            reason=f"{self.type_name} '{value.name}' cast back to FP32 for its FP32 readers",
        )


def exact_widening_source(value: oir.Value) -> oir.Value | None:
    """The input of the Cast producing `value` when that Cast widens exactly (bfloat16 ->
    float, ...), so the input holds the same numbers; None otherwise."""
    cast = value.producer()
    if cast is None or cast.op_type != "Cast" or cast.domain != "":
        return None
    source = cast.inputs[0]
    if source is None or (source.dtype, value.dtype) not in _EXACT_WIDENING:
        return None
    return source


def _remove_redundant_casts(graph: oir.Graph, log: PassLog) -> None:
    """Remove a Cast to the type its input already has, and the Cast closing a chain that
    widens exactly and narrows back (bfloat16 -> float -> bfloat16); then any Cast left unread."""
    for cast in list(graph):
        if cast.op_type != "Cast" or cast.domain != "" or cast.graph is None:
            continue
        output, target = cast.outputs[0], oir.DataType(cast.attributes.get_int("to"))
        source = exact_widening_source(cast.inputs[0]) if cast.inputs[0] is not None else None
        if cast.inputs[0] is not None and cast.inputs[0].dtype == target:
            same, reason = cast.inputs[0], f"its input is already {target.name}"
        elif source is not None and source.dtype == target:
            same = source
            reason = f"it narrows back an exact widening of {target.name} '{source.name}'"
        else:
            continue
        blocker = output_handover_blocker(output, same)
        if blocker is not None:
            log.skip([cast], rule=REDUNDANT_RULE, reason=f"Cast kept although {reason}: {blocker}")
            continue
        inner = cast.inputs[0].producer()
        forward_uses(output, same)
        log.removed([cast], rule=REDUNDANT_RULE, reason=f"Cast removed: {reason}")
        graph.remove(cast, safe=True)
        if inner is not None and inner.op_type == "Cast" and _unread(inner):
            log.removed([inner], rule=REDUNDANT_RULE, reason="Cast removed: no longer read")
            graph.remove(inner, safe=True)


def _unread(node: oir.Node) -> bool:
    return all(not value.consumers() and not value.is_graph_output() for value in node.outputs)
