"""Exactly what this onnxruntime build's CPU kernels cover: op, opset version range and the
tensor types of each type parameter. Both onnxruntime-backed targets claim a node only when a
kernel matches it, so their claims hold up against ONNX's own node tests."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import onnx
import onnx_ir as oir
from onnxruntime.capi import _pybind_state

from targets.api import Capabilities
from targets.known_failures import (
    FailureRule,
    always,
    attribute,
    input_count,
    known_failure,
)

_OPEN = 2**31 - 1


@dataclass(frozen=True)
class KernelRegistration:
    """One kernel onnxruntime registered for an op: the opset versions it serves (first to
    last) and the tensor types each of its type parameters accepts."""

    first: int
    last: int
    types: Mapping[str, frozenset[str]]  # type parameter -> ONNX type strings


@functools.cache
def cpu_kernels() -> Mapping[tuple[str, str], tuple[KernelRegistration, ...]]:
    found: dict[tuple[str, str], list[KernelRegistration]] = {}
    for kernel in _pybind_state.get_all_opkernel_def():
        if kernel.provider != "CPUExecutionProvider":
            continue
        domain = "" if kernel.domain in ("", "ai.onnx") else kernel.domain
        first, last = kernel.version_range
        types = {name: frozenset(allowed) for name, allowed in kernel.type_constraints.items()}
        registration = KernelRegistration(first, last, types)
        found.setdefault((domain, kernel.op_name), []).append(registration)
    return {key: tuple(kernels) for key, kernels in found.items()}


def kernel_gap(node: oir.Node) -> str | None:
    """Why no CPU kernel runs `node` (its op, its opset version, or its tensor types), or None."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    kernels = cpu_kernels().get((domain, node.op_type))
    label = f"{domain + '.' if domain else ''}{node.op_type}"
    if not kernels:
        return f"{label} has no onnxruntime CPU kernel"
    opset = _opset(node, domain)
    if opset is None:
        return None
    version = _schema_version(node, opset, domain)
    newest = max(k.first for k in kernels)
    in_range = [k for k in kernels if k.first <= version <= k.last]
    # A version newer than every kernel is a gap only for an op ONNX defines there: onnxruntime's
    # own default-domain ops (SimplifiedLayerNormalization) have no schema to be newer.
    newer = version > newest and onnx.defs.has(node.op_type, opset, domain)
    if not in_range or newer:
        return f"{label} has no onnxruntime CPU kernel for opset {opset} (version {version})"
    bound = _bound_types(node, opset, domain)
    if bound is None or any(_types_fit(kernel, bound) for kernel in in_range):
        return None
    shown = ", ".join(f"{name}={'/'.join(sorted(types))}" for name, types in bound.items())
    return f"{label} has no onnxruntime CPU kernel for {shown}"


def _opset(node: oir.Node, domain: str) -> int | None:
    graph = node.graph
    imports = getattr(graph, "opset_imports", None) or {}
    return imports.get(domain, imports.get("ai.onnx") if domain == "" else None)


def _schema_version(node: oir.Node, opset: int, domain: str) -> int:
    """The version of the op's definition at `opset` (kernels are registered by it)."""
    try:
        return onnx.defs.get_schema(node.op_type, opset, domain).since_version
    except onnx.defs.SchemaError:
        return opset


def _bound_types(node: oir.Node, opset: int, domain: str) -> dict[str, set[str]] | None:
    """Type parameter -> the ONNX type strings the node binds it to; None without a schema."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, domain)
    except onnx.defs.SchemaError:
        return None
    bound: dict[str, set[str]] = {}
    for params, values in ((schema.inputs, node.inputs), (schema.outputs, node.outputs)):
        for index, value in enumerate(values):
            if value is None or not params or value.dtype is None:
                continue
            if not isinstance(value.type, oir.TensorType):
                continue
            param = params[min(index, len(params) - 1)]
            bound.setdefault(param.type_str, set()).add(_type_string(value.dtype))
    return bound


def _types_fit(kernel: KernelRegistration, bound: Mapping[str, set[str]]) -> bool:
    return all(
        name not in kernel.types or types <= kernel.types[name] for name, types in bound.items()
    )


def _type_string(dtype: oir.DataType) -> str:
    """The ONNX type string kernels use: tensor(float), tensor(int64), ..."""
    name = onnx.helper.tensor_dtype_to_string(int(dtype)).removeprefix("TensorProto.").lower()
    return f"tensor({name})"


# Ops onnxruntime runs without a kernel of their own: Constant becomes an initializer, and ops
# ONNX defines as functions are expanded into their bodies when the model loads.
@functools.cache
def expanded_ops() -> frozenset[tuple[str, str]]:
    ops = {("", "Constant")}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain in ("", "ai.onnx") and (
            schema.has_function or schema.has_context_dependent_function
        ):
            ops.add(("", schema.name))
    return frozenset(ops - set(cpu_kernels()))


def _non_scalar(node: oir.Node, index: int) -> bool:
    value = node.inputs[index] if len(node.inputs) > index else None
    return value is not None and value.shape is not None and value.shape.rank() > 0


# Kernels this build has that fail ONNX's node tests (docs/conformance.md): a node matching one
# is not claimed, so it falls back instead of giving wrong numbers. (op, condition, reason)
KNOWN_FAILURES: tuple[FailureRule, ...] = (
    ("DFT", always, "onnxruntime's DFT misses ONNX's node tests (errors ~1e-4)"),
    ("STFT", always, "onnxruntime's STFT misses ONNX's node tests (errors ~1e-4)"),
    ("Attention", always, "onnxruntime's Attention fails 9 of ONNX's 93 node tests"),
    *(
        (op, lambda n: attribute(n, "layout", 0) == 1, f"onnxruntime's {op} rejects layout=1")
        for op in ("GRU", "LSTM", "RNN")
    ),
    (
        "ConvInteger",
        lambda n: _non_scalar(n, 2) or any(attribute(n, "pads", None) or ()),
        "onnxruntime's ConvInteger fails with padding or a per-channel x_zero_point",
    ),
    (
        "ReduceMax",
        lambda n: n.inputs[0] is not None and n.inputs[0].dtype == oir.DataType.BOOL,
        "onnxruntime's ReduceMax fails on bool",
    ),
    (
        "Resize",
        lambda n: attribute(n, "coordinate_transformation_mode", "") == "align_corners",
        "onnxruntime's Resize differs from ONNX with align_corners",
    ),
    (
        "MaxUnpool",
        lambda n: input_count(n) == 3,
        "onnxruntime's MaxUnpool differs from ONNX with an output_shape",
    ),
    (
        "Dropout",
        lambda n: input_count(n) == 3,
        "Dropout in training mode draws random numbers no two runtimes share",
    ),
    ("Bernoulli", always, "Bernoulli draws random numbers no two runtimes share"),
    ("SwiGLU", always, "onnxruntime cannot expand SwiGLU's function body"),
    (
        "StringNormalizer",
        always,
        "onnxruntime's StringNormalizer needs the locale installed on the host",
    ),
)


def onnxruntime_gap(node: oir.Node) -> str | None:
    """Why an onnxruntime-backed target does not claim `node`, or None."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    failure = known_failure(node, KNOWN_FAILURES)
    if failure is not None:
        return failure
    if (domain, node.op_type) in expanded_ops():
        return None
    return kernel_gap(node)


# Types the numpy bindings of onnxruntime's Python sessions cannot pass in or out.
_NOT_NUMPY = frozenset({"bfloat16", "float8_e4m3fn", "float8_e5m2"})
# ONNX type strings in kernel type constraints -> numpy dtype names.
_TYPE_NAMES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
    "tensor(float8e4m3fn)": "float8_e4m3fn",
    "tensor(float8e5m2)": "float8_e5m2",
}


@functools.cache
def onnxruntime_capabilities() -> Capabilities:
    dtypes = {
        _TYPE_NAMES[t]
        for kernels in cpu_kernels().values()
        for kernel in kernels
        for allowed in kernel.types.values()
        for t in allowed
        if t in _TYPE_NAMES
    }
    return Capabilities(
        frozenset(cpu_kernels()) | expanded_ops(),
        frozenset(dtypes),
        boundary_dtypes=frozenset(dtypes - _NOT_NUMPY),
    )
