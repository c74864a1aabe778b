"""OpenVINO itself, for the `openvino` target: asking it what it runs, compiling with the
target's options, reading back what it chose, and sessions over its infer requests."""

from __future__ import annotations

import functools
import io
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as oir

from ir.errors import AsicperfError, first_line
from ir.files import cache_root
from ir.fingerprint import fingerprint
from ir.node_ids import node_id
from passes.audit import Change, ChangeKind, config_to_json
from targets.api import CompiledModel, Session, graph_io_names, is_floating, value_dtypes
from targets.compile_record import artifact_digest, compile_record
from targets.precision_choice import PRECISION_KEY, PrecisionChoice

if TYPE_CHECKING:
    import openvino as ov

    from targets.openvino_target import OpenVinoConfig

_TARGET = "openvino"
_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
# OpenVINO's precision names, to numpy's (the names results use).
_PRECISIONS = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64"}
_INT8 = frozenset({"i8", "u8"})
# How OpenVINO's conversion errors end: a pointer to its docs, after the line that says why.
_DOCS_POINTER = "To facilitate the conversion of unsupported operations"
# Runtime-model layers that move or hold data rather than compute: their precision says
# nothing about the arithmetic, so the precision summary leaves them out.
_DATA_LAYERS = frozenset({"Const", "Input", "Output", "Parameter", "Result", "Reorder"})
# The layers whose int8 kernels the `int8` pipeline is for.
_MATRIX_LAYERS = frozenset({"Convolution", "FullyConnected", "MatMul", "Deconvolution"})
# Layers that run a body the runtime model does not list (GRU, LSTM and RNN with some attributes
# become a TensorIterator): the body follows the inference precision hint whatever the outer
# layer's own precision says.
_BODY_LAYERS = frozenset({"TensorIterator", "Loop"})


@functools.cache
def core() -> ov.Core:
    """One Core per process: it loads the device plugins, which takes half a second."""
    import openvino as ov

    return ov.Core()


def cache_dir() -> Path:
    """`$ASICPERF_CACHE/openvino`: OpenVINO's own blob cache, keyed by its hash of the model
    and the device, in one folder per set of compile options (`_options_cache_dir`)."""
    return cache_root() / "openvino"


def _options_cache_dir(config: OpenVinoConfig) -> Path:
    """The blob folder for the target's compile options. OpenVINO's key leaves the compile
    properties out (2026.4: a model compiled at f32 is then loaded from the same blob for
    bf16, and the reverse), and a blob loaded under other options is not what they compile:
    SmolLM2 with 8-bit MatMulNBits, compiled at f32 and loaded for bf16, went from perplexity
    13.2 to 21.8."""
    options = f"{config.hint}-{config.precision}-threads{config.threads}-streams{config.streams}"
    return cache_dir() / options


# --- what OpenVINO runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class QueryVerdicts:
    """Why each node of one model's graphs does not run on OpenVINO's device (None: it does),
    by node object, for as long as the graphs hold those nodes. The nodes of subgraphs (If,
    Loop bodies) run with the node that holds them."""

    graphs: tuple[oir.Graph, ...]  # the main graph, then its subgraphs
    reasons: Mapping[oir.Node, str | None]

    def answers(self, graph: oir.Graph) -> bool:
        """Asked about every node `graph` holds now."""
        return any(g is graph for g in self.graphs) and all(n in self.reasons for n in graph)

    def reason(self, node: oir.Node) -> str | None:
        return self.reasons.get(node)


_VERDICTS: dict[int, QueryVerdicts] = {}


def query_verdicts(graph: oir.Graph, device: str) -> QueryVerdicts:
    """OpenVINO's answer for the model whose main graph (or one of whose subgraphs) is
    `graph`, asked again whenever the graph holds a node it was not asked about: passes edit
    graphs in place."""
    known = _VERDICTS.get(id(graph))
    if known is not None and known.answers(graph):
        return known
    graphs = (graph, *graph.subgraphs())
    reasons = _query(graph, device)
    reasons.update((node, None) for sub in graphs[1:] for node in sub)
    verdicts = QueryVerdicts(graphs, reasons)
    _VERDICTS.clear()  # one model at a time: the compile being checked
    _VERDICTS.update((id(g), verdicts) for g in graphs)
    return verdicts


# What OpenVINO's ONNX frontend leaves in a partially converted model for a node it has no
# conversion for (or whose conversion failed).
_UNCONVERTED = frozenset({"ONNXFrameworkNode", "NotSupportedONNXNode"})
_NO_CONVERSION = "OpenVINO's ONNX frontend has no conversion for it"


def _query(graph: oir.Graph, device: str) -> dict[oir.Node, str | None]:
    """Convert what the ONNX frontend can and ask the device plugin which converted ops it
    runs, mapping OpenVINO's ops back to ONNX nodes by the tensor names they produce. Ops fed
    by an unconverted node have no types, and the plugin refuses them for that alone; so when
    the frontend leaves nodes out, the rest is asked again with those nodes cut out and their
    outputs made graph inputs, as the partitioner will hand them to the target."""
    reasons: dict[oir.Node, str | None] = dict.fromkeys(graph)
    proto = oir.to_proto(oir.Model(graph, ir_version=10))
    found = _ask(proto, graph, device)
    if found is None:  # a model OpenVINO cannot even read: its compile says why, in one line
        return reasons
    cut = [node for node, reason in found.items() if reason == _NO_CONVERSION]
    if cut:
        _cut_out(proto, cut)
        found = {**(_ask(proto, graph, device) or {}), **dict.fromkeys(cut, _NO_CONVERSION)}
    reasons.update(found)
    return reasons


def _ask(proto: Any, graph: oir.Graph, device: str) -> dict[oir.Node, str] | None:
    """The nodes of `graph` that the model `proto` (the graph, or a cut of it) cannot run on
    `device`, with the reason; None when OpenVINO cannot read it at all."""
    try:
        frontend = _onnx_frontend()
        converted = frontend.convert_partially(frontend.load(io.BytesIO(proto.SerializeToString())))
        supported = core().query_model(converted, device)
    except Exception:  # OpenVINO's exception types
        return None
    producers = {out.name: node for node in graph for out in node.outputs if out.name}
    found: dict[oir.Node, str] = {}
    for op in converted.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Parameter", "Result", "Constant"):
            continue
        if kind in _UNCONVERTED:
            reason = _NO_CONVERSION
        elif op.get_friendly_name() not in supported:
            reason = f"OpenVINO's {device} plugin does not run {kind}"
        else:
            continue
        for output in op.outputs():
            for name in output.get_names():
                if name in producers:
                    found.setdefault(producers[name], reason)
    return found


def _cut_out(proto: Any, nodes: list[oir.Node]) -> None:
    """Remove `nodes` from the model proto; their outputs become graph inputs of the types
    the IR knows."""
    from onnx import helper

    outputs = {out.name: out for node in nodes for out in node.outputs if out.name}
    kept = [n for n in proto.graph.node if not set(n.output) & set(outputs)]
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    for name, value in outputs.items():
        if value.dtype is None:
            continue
        dims = (
            None
            if value.shape is None
            else [d if isinstance(d, int) else None for d in value.shape]
        )
        proto.graph.input.append(helper.make_tensor_value_info(name, int(value.dtype), dims))


@functools.cache
def _onnx_frontend() -> Any:
    import openvino as ov

    return ov.frontend.FrontEndManager().load_by_framework("onnx")


# --- compiling ------------------------------------------------------------------------------


def compile_openvino(name: str, model: oir.Model, config: OpenVinoConfig) -> CompiledModel:
    """Read the model with OpenVINO's ONNX frontend, compile it for the device with the
    options as properties, and record what OpenVINO chose and the layers it will execute."""
    _check_device(config.device)
    # The partition that led here is done with OpenVINO's verdicts; kept, they would hold the
    # partitioned graph, weights included, for as long as the session runs (SmolLM2's 530 MB
    # in an LLM bench's peak memory).
    _VERDICTS.clear()
    data = oir.to_proto(model).SerializeToString()
    properties = _properties(config)
    start = time.perf_counter()
    try:
        compiled = core().compile_model(core().read_model(data, b""), config.device, properties)
    except Exception as error:  # OpenVINO's exception types
        raise AsicperfError(
            f"target '{name}' cannot compile the model: {openvino_message(error)}"
        ) from error
    wall_ms = (time.perf_counter() - start) * 1e3
    layers = runtime_layers(compiled)
    nodes = layer_nodes(layers, model)
    precision = _precision_choice(model, config, compiled, layers)
    inputs, outputs = graph_io_names(model)
    record = compile_record(
        target=name,
        config=config_to_json(config),
        ir_fingerprint=fingerprint(model),
        artifact_fingerprint=artifact_digest(data + repr(sorted(properties.items())).encode()),
        wall_ms=wall_ms,
        nodes=(sum(1 for _ in model.graph), sum(1 for layer in layers if layer.computes)),
        changes=_layer_changes(layers, nodes, precision, config.device),
        extra={
            PRECISION_KEY: precision.to_json(),
            **_chosen(compiled, config),
            "cache_hit": _loaded_from_cache(compiled),
            "cache_dir": str(cache_dir()) if config.cache else None,
            "layer_precisions": _precision_counts(layers),
            "int8": _int8_summary(layers),
            "layers": [layer.to_json(nodes[layer.name]) for layer in layers if layer.computes],
        },
    )
    return CompiledModel(
        name,
        record.in_fingerprint,
        record.config,
        compiled,
        record,
        inputs,
        outputs,
        cache_hit=bool(record.extra["cache_hit"]),
    )


def _check_device(device: str) -> None:
    """The device must be one OpenVINO found here (its plugin's name alone, or with index)."""
    available = list(core().available_devices)
    if device not in available and device.split(".")[0] not in available:
        raise AsicperfError(
            f"target 'openvino': device '{device}' is not available here "
            f"(OpenVINO finds: {', '.join(available) or 'none'})"
        )


def _properties(config: OpenVinoConfig) -> dict[str, Any]:
    properties: dict[str, Any] = {"PERFORMANCE_HINT": _HINTS[config.hint]}
    if config.precision != "default":
        properties["INFERENCE_PRECISION_HINT"] = config.precision
    if config.threads:
        properties["INFERENCE_NUM_THREADS"] = config.threads
    if config.streams:
        properties["NUM_STREAMS"] = config.streams
    if config.cache:
        properties["CACHE_DIR"] = str(_options_cache_dir(config))
    if config.perf_count:
        properties["PERF_COUNT"] = True
    return properties


def _chosen(compiled: ov.CompiledModel, config: OpenVinoConfig) -> dict[str, Any]:
    """What OpenVINO settled on, read back from the compiled model rather than assumed from
    the options (a hint picks streams and threads; a device may ignore a precision)."""
    return {
        "device": config.device,
        "execution_devices": [str(d) for d in _property(compiled, "EXECUTION_DEVICES", [])],
        "performance_hint": str(_property(compiled, "PERFORMANCE_HINT", "")),
        "streams": int(_property(compiled, "NUM_STREAMS", 0)),
        "threads": int(_property(compiled, "INFERENCE_NUM_THREADS", 0)),
        "inference_precision_hint": _type_name(_property(compiled, "INFERENCE_PRECISION_HINT", "")),
        # runs are synchronous: one infer request, so one stream works at a time
        "requests_in_flight": 1,
    }


def _property(compiled: ov.CompiledModel, key: str, default: Any) -> Any:
    try:
        return compiled.get_property(key)
    except Exception:  # a device plugin that does not report this property
        return default


def _loaded_from_cache(compiled: ov.CompiledModel) -> bool:
    return bool(_property(compiled, "LOADED_FROM_CACHE", False))


def _type_name(value: Any) -> str:
    """numpy's name for an OpenVINO element type (`<Type: 'bfloat16'>`, "f32"), else as is."""
    text = str(getattr(value, "get_type_name", lambda: value)())
    return _PRECISIONS.get(text, text)


# --- the runtime model ----------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeLayer:
    """One layer of the compiled model, as OpenVINO's runtime model describes it: its type,
    kernel (`primitiveType`), runtime precision and the ops of the read model it executes."""

    name: str
    layer_type: str
    precision: str  # OpenVINO's short name: f32, bf16, i8, u8
    primitive: str
    originals: tuple[str, ...]

    @property
    def computes(self) -> bool:
        return self.layer_type not in _DATA_LAYERS

    def to_json(self, node_ids: tuple[str, ...]) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.layer_type,
            "precision": self.precision,
            "primitive": self.primitive,
            "nodes": list(node_ids),
        }


def runtime_layers(compiled: ov.CompiledModel) -> list[RuntimeLayer]:
    def text(info: Mapping[str, Any], key: str) -> str:
        return info[key].astype(str) if key in info else ""

    layers = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        originals = tuple(n for n in text(info, "originalLayersNames").split(",") if n)
        layers.append(
            RuntimeLayer(
                name=op.get_friendly_name(),
                layer_type=text(info, "layerType"),
                precision=text(info, "runtimePrecision"),
                primitive=text(info, "primitiveType"),
                originals=originals,
            )
        )
    return layers


def layer_nodes(layers: list[RuntimeLayer], model: oir.Model) -> dict[str, tuple[str, ...]]:
    """The IR node ids each computing layer executes. A layer names the ops it runs
    (`originalLayersNames`), which OpenVINO's ONNX frontend names after the ONNX node or its
    output; an IR node that no layer names was folded into another op on the way (a
    Convolution absorbed by the BatchNorm scale it was multiplied with, a constant
    subexpression), and belongs to the layer that runs its only consumer."""
    by_name: dict[str, oir.Node] = {}
    for node in model.graph:
        for name in [node.name, *(out.name for out in node.outputs)]:
            if name:
                by_name.setdefault(name, node)
    owner: dict[oir.Node, str] = {}
    for layer in layers:
        if layer.computes:
            for name in layer.originals:
                if name in by_name:
                    owner.setdefault(by_name[name], layer.name)
    for node in reversed(list(model.graph)):
        if node not in owner:
            consumers = {owner.get(user) for out in node.outputs for user, _ in out.uses()}
            if len(consumers) == 1 and None not in consumers:
                owner[node] = consumers.pop()
    found: dict[str, list[str]] = {layer.name: [] for layer in layers if layer.computes}
    for node in model.graph:
        if node in owner:
            found[owner[node]].append(node_id(node))
    return {name: tuple(ids) for name, ids in found.items()}


def _precision_counts(layers: list[RuntimeLayer]) -> dict[str, int]:
    """Computing layers per runtime precision: {"bf16": 55, "f32": 2}."""
    return dict(Counter(layer.precision for layer in layers if layer.computes))


def _int8_summary(layers: list[RuntimeLayer]) -> dict[str, Any]:
    """How many convolution and matrix layers run int8 kernels and how many stayed floating
    point: what the `int8` pipeline is for."""
    matrix = [layer for layer in layers if layer.layer_type in _MATRIX_LAYERS]
    int8 = [layer for layer in matrix if layer.precision in _INT8]
    return {
        "matrix_layers": len(matrix),
        "int8_matrix_layers": len(int8),
        "int8_by_type": dict(Counter(layer.layer_type for layer in int8)),
        "floating_matrix_layers": len(matrix) - len(int8),
    }


def _precision_choice(
    model: oir.Model, config: OpenVinoConfig, compiled: ov.CompiledModel, layers: list[RuntimeLayer]
) -> PrecisionChoice:
    """The model's floating type against what OpenVINO computed in: the inference precision
    hint counts only if some computing layer really ran at it (an int8 or integer-only graph
    under a bf16 hint computes nothing in bf16)."""
    floats = Counter(dtype for _, dtype in value_dtypes(model) if is_floating(dtype))
    model_type = floats.most_common(1)[0][0] if floats else "float32"
    hint = _property(compiled, "INFERENCE_PRECISION_HINT", "")
    hint_name = str(getattr(hint, "get_type_name", lambda: hint)())
    ran_at_hint = any(
        layer.computes and (layer.precision == hint_name or layer.layer_type in _BODY_LAYERS)
        for layer in layers
    )
    effective = _PRECISIONS.get(hint_name, model_type) if ran_at_hint else model_type
    requested = _PRECISIONS[config.precision] if config.precision != "default" else "default"
    return PrecisionChoice.decide(model=model_type, requested=requested, effective=effective)


def _layer_changes(
    layers: list[RuntimeLayer],
    nodes: Mapping[str, tuple[str, ...]],
    precision: PrecisionChoice,
    device: str,
) -> tuple[Change, ...]:
    """OpenVINO's own rewriting in the audit's terms: a layer that executes several IR nodes
    is a fusion (an added node replacing them), and a layer computing in another precision
    than the model's is a dtype change."""
    changes = []
    model_short = {v: k for k, v in _PRECISIONS.items()}.get(precision.model, precision.model)
    for layer in layers:
        if not layer.computes:
            continue
        ids = nodes[layer.name]
        if len(ids) > 1:
            reason = (
                f"OpenVINO {device}: one {layer.layer_type} layer ({layer.primitive}) runs "
                f"{len(ids)} nodes"
            )
            changes.append(Change(ChangeKind.ADDED_NODE, ids, "openvino-fusion", reason, ids))
        if layer.precision and layer.precision != model_short and ids:
            reason = f"OpenVINO {device}: {layer.layer_type} runs in {layer.precision}"
            changes.append(Change(ChangeKind.DTYPE, ids, "openvino-precision", reason))
    return tuple(changes)


# --- sessions -------------------------------------------------------------------------------


def load_session(name: str, compiled: CompiledModel) -> OpenVinoSession:
    return OpenVinoSession(compiled.payload, compiled.output_names, name)


class OpenVinoSession(Session):
    """One infer request of the compiled model; outputs in the IR's graph output order."""

    def __init__(self, compiled: ov.CompiledModel, output_names: tuple[str, ...], name: str):
        self._request = compiled.create_infer_request()
        self._outputs = [compiled.output(output) for output in output_names]
        # OpenVINO drops graph inputs that nothing reads once constants are folded
        self._inputs = frozenset(name for port in compiled.inputs for name in port.get_names())
        self._port_names = [port.get_names() for port in compiled.inputs]
        self._name = name

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        # An input left unset runs on whatever its buffer holds: refuse instead.
        unfed = [min(names) for names in self._port_names if names.isdisjoint(feeds)]
        if unfed:
            raise AsicperfError(
                f"target '{self._name}' failed to run: no feed for OpenVINO's input "
                f"'{unfed[0]}' (its ONNX frontend renamed a graph input)"
            )
        # Shared both ways, so each output is copied once (below, before the next call reuses
        # OpenVINO's buffers) and no input at all: the binding's default copies both ways,
        # 5.5 of a SmolLM2 decode step's 22 ms with its 60 cache tensors in and out.
        feeds = {k: v for k, v in feeds.items() if k in self._inputs}
        try:
            results = self._request.infer(feeds, share_inputs=True, share_outputs=True)
        except Exception as error:  # OpenVINO's exception types
            raise AsicperfError(
                f"target '{self._name}' failed to run: {openvino_message(error)}"
            ) from error
        return [np.array(results[port]) for port in self._outputs]

    def profiling_info(self) -> list[Any]:
        """OpenVINO's per-layer counters of the last run (a model compiled with PERF_COUNT)."""
        return list(self._request.get_profiling_info())


def openvino_message(error: BaseException) -> str:
    """The line of an OpenVINO exception that says what went wrong: its messages open with
    the C++ source location ("Exception from src/inference/src/cpp/core.cpp:105:") and the
    check that failed, and end with the cause."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(_DOCS_POINTER)]
    return lines[-1] if lines else first_line(error)
