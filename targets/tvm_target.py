"""The `tvm` target: Apache TVM's Relax compiler, through its ONNX frontend, on the CPU (LLVM) or
a CUDA GPU.

The model is first cleaned with the toolkit's own passes (constant folding, BatchNorm folded into
convolutions, LayerNorm recognized, identity removal, dead code): TVM's frontend rejects
torch-exported shape arithmetic (Shape -> Gather -> Concat -> Max/Mul/... -> ConstantOfShape or
Reshape) that those passes fold away when the input shapes are static. Symbolic dims stay
symbolic: Relax compiles them as shape variables, so one artifact runs every batch size, but
shape arithmetic over them cannot fold (the frontend error says so).

On the CPU, every fused PrimFunc goes through the project's schedule rules
(`targets.tvm_schedules`), and the compile record lists which rule scheduled which function.
Nothing is tuned (MetaSchedule crashes on this wheel). On CUDA, `tvm.compile`'s default GPU
pipeline gives every kernel DLight's default schedule.

`tvm` is imported only inside functions, so this module loads without TVM installed and `info()`
says why the target is unavailable.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import platform
import re
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import onnx
import onnx_ir as ir

from ir.errors import AsicperfError, first_line
from ir.files import cache_root, write_text_atomically
from ir.fingerprint import fingerprint
from ir.model_io import copy_model
from passes.audit import config_to_json
from passes.base import PassConfig
from passes.manager import PipelineResult, run_pipeline
from passes.option_range import bounded
from passes.pipeline import parse_pipeline
from passes.rewrite import constant_array
from targets.api import Capabilities, CompiledModel, Session, Target, TargetInfo, graph_io_names
from targets.compile_record import compile_record, op_count_changes, op_counts
from targets.device import host_device
from targets.hardware.host import detect_cpu
from targets.known_failures import (
    FailureRule,
    always,
    attribute,
    input_count,
    known_failure,
    used_outputs,
)
from targets.tvm_schedules.apply import FunctionSchedule
from targets.tvm_schedules.host_tuning import CpuTuning, host_tuning
from targets.tvm_schedules.mcpu import McpuChoice, choose_mcpu
from targets.tvm_schedules.pipeline import cpu_pipeline
from targets.tvm_schedules.profile import profile_calls
from targets.tvm_schedules.rules import cpu_rules

LOWERING = "fold-constants,fuse-conv-bn,recognize-layernorm{target=tvm},remove-identity,dce"
CACHE_SCHEMA = "asicperf.tvm-cache/2"  # bump when the way an artifact is built changes
# Converters named after an ONNX op that implement a different op: TVM's "Attention" is
# com.microsoft's (packed QKV weight), not ONNX-23's Attention(Q, K, V).
_NOT_THE_ONNX_OP = frozenset({"Attention"})
# Inputs that TVM's ONNX frontend reads as constants (shapes, axes, counts): a node that gets
# them at run time falls back. Found by ONNX's node tests (docs/conformance.md).
_CONSTANT_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "ConstantOfShape": (0,),
    "Tile": (1,),
    "Split": (1,),
    "Pad": (1, 2, 3),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "TopK": (1,),
    "OneHot": (1,),
    "Range": (0, 1, 2),
    "Trilu": (1,),
    "EyeLike": (),
    "CumSum": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Slice": (1, 2, 3, 4),
    **{
        op: (1,)
        for op in (
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceMax",
            "ReduceMean",
            "ReduceMin",
            "ReduceProd",
            "ReduceSum",
            "ReduceSumSquare",
        )
    },
}


def _typed_values(node: ir.Node) -> list[ir.Value]:
    return [v for v in [*node.inputs, *node.outputs] if v is not None and v.type is not None]


def _mixed_dtypes(node: ir.Node) -> bool:
    return len({v.dtype for v in node.inputs if v is not None}) > 1


def _floating_base(node: ir.Node) -> bool:
    base = node.inputs[0]
    return base is not None and base.dtype is not None and base.dtype.is_floating_point()


# Where TVM 0.27's frontend fails ONNX's node tests (docs/conformance.md).
_KNOWN_FAILURES: tuple[FailureRule, ...] = (
    *(
        (op, lambda n: used_outputs(n) > 1, f"TVM's frontend drops {op}'s extra outputs")
        for op in ("LayerNormalization", "MaxPool", "BatchNormalization", "Dropout")
    ),
    ("Dropout", lambda n: input_count(n) == 3, "TVM's frontend ignores Dropout's training mode"),
    ("Pow", _mixed_dtypes, "TVM's frontend needs Pow's operands in one dtype"),
    ("Pow", lambda n: not _floating_base(n), "TVM's power only applies to floats"),
    *(
        (op, lambda n: attribute(n, "block_size", 0) != 0, f"TVM's frontend has no blocked {op}")
        for op in ("QuantizeLinear", "DequantizeLinear")
    ),
    (
        "ConvTranspose",
        lambda n: attribute(n, "output_shape", None) is not None,
        "TVM's frontend ignores ConvTranspose's output_shape",
    ),
    ("EyeLike", lambda n: attribute(n, "dtype", None) is not None, "TVM's EyeLike ignores dtype"),
    *(
        (op, always, f"TVM's {op} fails ONNX's node tests")
        for op in (
            "AffineGrid",
            "BitShift",
            "IsInf",
            "MaxUnpool",
            "Mish",
            "Mod",
            "NonMaxSuppression",
            "RMSNormalization",
            "RoiAlign",
            "SpaceToDepth",
        )
    ),
)
# What the frontend imports (any type onnx maps to numpy) and the VM moves in and out as numpy;
# each one round-trips through tests/test_target_tvm.py.
_DTYPES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64"}
    | {"uint8", "uint16", "uint32", "uint64", "bool"}
)


@dataclass(frozen=True)
class TvmConfig(PassConfig):
    device: Literal["cpu", "cuda"] = "cpu"
    opt_level: int = bounded(3, low=0, high=4)  # TVM's PassContext levels
    mcpu: str = ""  # LLVM CPU name; "" takes LLVM's host CPU or the one the CPU flags prove
    cache: bool = True  # reuse compiled libraries from $ASICPERF_CACHE/tvm
    schedule: bool = True  # the project's CPU schedule rules; false keeps TVM's plain loop nests


@dataclass(frozen=True)
class _Artifact:
    """What `load` needs: the compiled module, its parameters' names in order, and how many
    outputs `main` returns (more than one come as a tuple)."""

    module: Any  # tvm.runtime.Executable (just built) or tvm.runtime.Module (from the cache)
    params: tuple[str, ...]
    outputs: int


@dataclass(frozen=True)
class _Build:
    """A compiled library and what scheduled each of its functions (empty when unscheduled)."""

    module: Any
    schedules: tuple[FunctionSchedule, ...]


def cache_dir() -> Path:
    """`$ASICPERF_CACHE/tvm`, beside the host measurements."""
    return cache_root() / "tvm"


class TvmTarget(Target):
    name = "tvm"
    config_type = TvmConfig

    def info(self) -> TargetInfo:
        try:
            tvm = _import_tvm()
        except AsicperfError as error:
            return TargetInfo(
                self.name, "?", host_device(), available=False, why_not=str(error), hardware="host"
            )
        gpu = tvm.cuda(0)
        device = host_device() + (f" (+ cuda: {gpu.device_name})" if gpu.exist else "")
        llvm = tvm.runtime.enabled("llvm")
        return TargetInfo(
            self.name,
            tvm.__version__,
            device,
            available=llvm,
            why_not=None if llvm else "this TVM build has no LLVM backend",
            hardware="host",
            preferred_batch_sizes=(1, 8),
        )

    def capabilities(self) -> Capabilities:
        _import_tvm()  # a one-line error without TVM
        return _capabilities()

    def unsupported_reason(self, node: ir.Node, capabilities: Capabilities) -> str | None:
        """Beyond the converter table: the frontend needs shape-like operands as constants."""
        reason = super().unsupported_reason(node, capabilities)
        if reason is not None or node.domain not in ("", "ai.onnx"):
            return reason
        for index in _CONSTANT_OPERANDS.get(node.op_type, ()):
            value = node.inputs[index] if index < len(node.inputs) else None
            if value is not None and constant_array(value) is None:
                return f"TVM's ONNX frontend needs {node.op_type} input {index} as a constant"
        if any(not isinstance(v.type, ir.TensorType) for v in _typed_values(node)):
            return "TVM's ONNX frontend types sequences and optionals as plain tensors"
        return known_failure(node, _KNOWN_FAILURES)

    def prepare(self, model: ir.Model) -> ir.Model:
        """Lowered first, so shape operands that the cleanup folds count as constants when the
        claims are checked (else their Reshapes would fall back and split the graph)."""
        return _lower(model).model

    def compile(self, model: ir.Model, config: PassConfig) -> CompiledModel:
        assert isinstance(config, TvmConfig)
        tvm = _import_tvm()
        start = time.perf_counter()
        lowered = _lower(model)
        _check_ops(lowered.model, self.capabilities())
        mcpu = _host_mcpu(tvm, config)
        target = _tvm_target(tvm, config, mcpu.mcpu)
        tuning = _tuning(target)
        key = _cache_key(tvm, lowered.fingerprint, str(target), config, tuning)
        path = cache_dir() / f"{key}.so" if config.cache else None
        built = _load_cached(tvm, path)
        cache_hit = built is not None
        if built is None:
            built = _build(tvm, ir.to_proto(lowered.model), target, config)
            if path is not None:
                _store(built, path)
        wall_ms = (time.perf_counter() - start) * 1e3
        before = [node.op_type for node in model.graph]
        after = [node.op_type for node in lowered.model.graph]
        inputs, outputs = graph_io_names(model)
        record = compile_record(
            target=self.name,
            config=config_to_json(config),
            ir_fingerprint=fingerprint(model),
            artifact_fingerprint=f"sha256:{key}",
            wall_ms=wall_ms,
            nodes=(len(before), len(after)),
            changes=op_count_changes(
                op_counts(before), op_counts(after), rule="tvm-lowering", who=LOWERING
            ),
            extra={
                "lowering": [r.to_json() for r in lowered.records],
                "tvm_target": json.loads(str(target)),
                "mcpu": mcpu.to_json(),
                "cache_hit": cache_hit,
                "cache_path": str(path) if path else None,
                "precision": "as in the model",
                **_schedule_summary(built.schedules, config, tuning),
            },
        )
        artifact = _Artifact(built.module, graph_io_names(lowered.model)[0], len(outputs))
        return CompiledModel(
            self.name,
            record.in_fingerprint,
            record.config,
            artifact,
            record,
            inputs,
            outputs,
            cache_hit=cache_hit,
        )

    def load(self, compiled: CompiledModel, batch_size: int) -> TvmSession:
        """Any batch size: symbolic dims are shape variables in the compiled module."""
        tvm = _import_tvm()
        from tvm import relax

        config = TvmConfig(**compiled.options)
        device = tvm.cuda(0) if config.device == "cuda" else tvm.cpu(0)
        machine = relax.VirtualMachine(compiled.payload.module, device)
        return TvmSession(tvm, machine, device, compiled.payload, self.name)


class TvmSession(Session):
    """Numpy in, numpy out around the Relax VM's `main`."""

    def __init__(
        self, tvm: ModuleType, machine: Any, device: Any, artifact: _Artifact, target: str
    ) -> None:
        self._tvm = tvm
        self._machine = machine
        self._main = machine["main"]
        self._device = device
        self._artifact = artifact
        self._target = target

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        bound = self.bind(feeds)
        bound.run()
        return bound.outputs()

    def bind(self, feeds: Mapping[str, np.ndarray]) -> BoundMain:
        """`main` with `feeds` converted to device tensors once, so that repeated calls time the
        compiled code alone (the microbenchmarks' tvm provider)."""
        return BoundMain(
            self._tvm, self._main, tuple(self._arguments(feeds)), self._artifact, self._target
        )

    def profile(self, feeds: Mapping[str, np.ndarray], runs: int = 3) -> dict[str, float]:
        """Mean seconds per run in each compiled function (see `profile_calls`)."""
        return profile_calls(self._machine, self._arguments(feeds), runs)

    def _arguments(self, feeds: Mapping[str, np.ndarray]) -> list[Any]:
        params = self._artifact.params
        missing = [name for name in params if name not in feeds]
        if missing:
            raise AsicperfError(f"target '{self._target}': missing input(s) {', '.join(missing)}")
        tensor = self._tvm.runtime.tensor
        try:  # not np.ascontiguousarray: it turns a 0-d input into 1-d
            return [tensor(np.asarray(feeds[name], order="C"), self._device) for name in params]
        except Exception as error:  # a dtype TVM cannot hold
            raise AsicperfError(
                f"target '{self._target}' failed to run: {first_line(error)}"
            ) from error


class BoundMain:
    """The VM's `main` over inputs already on the device: `run` is only the call (the VM
    allocates a new output each time), `outputs` converts the last run's outputs to numpy."""

    def __init__(
        self,
        tvm: ModuleType,
        main: Any,
        arguments: tuple[Any, ...],
        artifact: _Artifact,
        target: str,
    ) -> None:
        self._tvm = tvm
        self._main = main
        self._arguments = arguments
        self._artifact = artifact
        self._target = target
        self._result: Any = None

    def run(self) -> None:
        try:
            self._result = self._main(*self._arguments)
        except Exception as error:  # TVM raises RuntimeError, ValueError, TVMError subclasses
            raise AsicperfError(
                f"target '{self._target}' failed to run: {first_line(error)}"
            ) from error

    def outputs(self) -> list[np.ndarray]:
        if self._result is None:
            raise AsicperfError(f"target '{self._target}': outputs asked for before any run")
        values = list(self._result) if self._artifact.outputs > 1 else [self._result]
        return [_to_numpy(self._tvm, value) for value in values]


def _import_tvm() -> ModuleType:
    """TVM, with its thread pool sized to every core: by default it assumes two hyper-threads
    per core on x86 and starts half as many workers as there are CPUs (one on a 2-core VM). The
    pool reads `TVM_NUM_THREADS` when it starts, at the first parallel kernel; a value the user
    set is kept."""
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    try:
        import tvm
    except Exception as error:  # ImportError, or a broken native library
        raise AsicperfError(f"cannot import tvm: {first_line(error)}") from error
    return tvm


@functools.cache
def _capabilities() -> Capabilities:
    """The ONNX (default domain) ops TVM's Relax frontend has a converter for, plus `If`,
    which the importer converts itself."""
    from tvm.relax.frontend.onnx import onnx_frontend

    names = (set(onnx_frontend._get_convert_map()) | {"If"}) - _NOT_THE_ONNX_OP
    ops = frozenset(("", name) for name in names if onnx.defs.has(name))
    return Capabilities(ops, _DTYPES)


def _lower(model: ir.Model) -> PipelineResult:
    """The cleanup passes on a copy: the caller's model is never touched."""
    copy = copy_model(model)
    return run_pipeline(copy, parse_pipeline(LOWERING))


def _check_ops(model: ir.Model, capabilities: Capabilities) -> None:
    missing = sorted(
        {
            f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            for node in ir.traversal.RecursiveGraphIterator(model.graph)
            if not capabilities.runs_op(node.domain, node.op_type)
        }
    )
    if missing:
        raise AsicperfError(
            f"target 'tvm': TVM's ONNX frontend cannot convert op(s) {', '.join(missing)}"
        )


def _host_mcpu(tvm: ModuleType, config: TvmConfig) -> McpuChoice:
    """The option's CPU, else on x86 LLVM's host CPU checked against the CPU flags (see
    `choose_mcpu`), else LLVM's generic CPU."""
    if config.mcpu:
        return McpuChoice(config.mcpu, "option", "set by tvm{mcpu=...}")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return McpuChoice("generic", "not-x86", "CPU flags are only read on x86")
    codegen = tvm.target.codegen
    return choose_mcpu(
        codegen.llvm_get_system_cpu(), detect_cpu().flags, codegen.llvm_get_system_x86_vendor()
    )


def _tvm_target(tvm: ModuleType, config: TvmConfig, mcpu: str) -> Any:
    """The LLVM target for `mcpu`, or the visible CUDA GPU with that CPU as host."""
    host = {"kind": "llvm", "mcpu": mcpu, "num-cores": os.cpu_count() or 1}
    if config.device == "cpu":
        return tvm.target.Target(host)
    gpu = tvm.cuda(0)
    if not gpu.exist:
        raise AsicperfError("target 'tvm': device=cuda, but TVM sees no CUDA GPU")
    arch = "sm_" + gpu.compute_version.replace(".", "")
    return tvm.target.Target({"kind": "cuda", "arch": arch, "host": host})


def _build(tvm: ModuleType, proto: onnx.ModelProto, target: Any, config: TvmConfig) -> _Build:
    """The frontend, then `tvm.compile`: on the CPU through the project's pipeline (legalize,
    fuse, schedule rules), on a GPU through TVM's default one (fuse, then DLight's Matmul, GEMV,
    Reduction, GeneralReduction and Fallback schedules). Frontend failures are one line naming
    the op when TVM says which."""
    from tvm.relax.frontend.onnx import from_onnx

    printed = io.StringIO()  # the frontend prints the failing op (and its inputs) to stdout
    try:
        with contextlib.redirect_stdout(printed), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # checker complaints and input renames
            module = from_onnx(proto, keep_params_in_input=False)
    except Exception as error:  # converters raise whatever their checks hit
        failed = re.search(r"Error converting operator (\S+)", printed.getvalue())
        where = f" on op {failed.group(1).rstrip(',')}" if failed else ""
        dims = (d for i in proto.graph.input for d in i.type.tensor_type.shape.dim)
        hint = (
            " (symbolic input dims keep the model's shape arithmetic from folding)"
            if any(not d.HasField("dim_value") for d in dims)
            else ""
        )
        raise AsicperfError(
            f"target 'tvm': TVM's ONNX frontend failed{where}: {first_line(error)}{hint}"
        ) from error
    schedules: list[FunctionSchedule] = []
    pipeline = {}  # TVM's default for the target
    if config.device == "cpu" and config.schedule:
        pipeline = {"relax_pipeline": cpu_pipeline(cpu_rules(), _tuning(target), schedules)}
    try:
        with tvm.transform.PassContext(opt_level=config.opt_level):
            executable = tvm.compile(module, target=target, **pipeline)
    except Exception as error:  # TVMError and friends from any lowering pass
        raise AsicperfError(f"target 'tvm': compile failed: {first_line(error)}") from error
    return _Build(executable, tuple(schedules))


def _tuning(target: Any) -> CpuTuning:
    """The figures the rules tile by: the compiled-for core count, this host's caches."""
    return host_tuning(detect_cpu().flags, cores=int(target.attrs.get("num-cores", 0)) or None)


def _schedule_summary(
    schedules: Sequence[FunctionSchedule], config: TvmConfig, tuning: CpuTuning
) -> dict[str, Any]:
    """Which rule scheduled which function, how many each rule took, and the figures (vector
    width, cores, measured caches) they tiled by."""
    if config.device != "cpu" or not config.schedule:
        return {"schedules": "TVM's default (DLight on cuda, none on cpu)"}
    by_rule = Counter(s.rule for s in schedules)
    return {
        "cpu_tuning": tuning.to_json(),
        "schedule_rules": dict(sorted(by_rule.items())),
        "schedules": [s.to_json() for s in schedules],
    }


def _cache_key(
    tvm: ModuleType, ir_fingerprint: str, target: str, config: TvmConfig, tuning: CpuTuning
) -> str:
    """What determines the library: the lowered IR, TVM, the target, the options and the
    figures the rules tile by (the same CPU name with other cache sizes tiles differently)."""
    described = {
        "tuning": tuning.to_json(),
        "schema": CACHE_SCHEMA,
        "ir": ir_fingerprint,
        "tvm": tvm.__version__,
        "target": target,
        "config": config_to_json(config),
        "schedule_rules": _schedule_rules_digest(),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


@functools.cache
def _schedule_rules_digest() -> str:
    """The rules' own source: a library that other (older) rules scheduled is not a hit."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).with_name("tvm_schedules").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _load_cached(tvm: ModuleType, path: Path | None) -> _Build | None:
    """The cached library and its schedule records (written first, so a library without them
    was never completed), or None when absent or unreadable (then it is rebuilt)."""
    if path is None or not path.is_file():
        return None
    try:
        records = json.loads(path.with_suffix(".json").read_text())
        schedules = tuple(FunctionSchedule(**record) for record in records)
        return _Build(tvm.runtime.load_module(os.fspath(path)), schedules)
    except Exception:  # a truncated or foreign file is only a cache miss
        return None


def _store(built: _Build, path: Path) -> None:
    """Export the library beside its final name, then rename: readers never see half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        records = json.dumps([s.to_json() for s in built.schedules], indent=1)
        write_text_atomically(path.with_suffix(".json"), records)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem[:12]}.") as folder:
            staged = Path(folder) / path.name
            built.module.export_library(os.fspath(staged))
            os.replace(staged, path)
    except Exception as error:  # OSError, or the linker failing inside TVM
        raise AsicperfError(
            f"{path}: cannot write the TVM cache: {first_line(error)} "
            "(set ASICPERF_CACHE to a writable folder, or use tvm{cache=false})"
        ) from error


def _to_numpy(tvm: ModuleType, value: Any) -> Any:
    """One output as numpy: a tensor, a shape (as int64), or a list for an ONNX sequence."""
    if isinstance(value, tvm.runtime.Tensor):
        return value.numpy()
    if isinstance(value, tvm.runtime.ShapeTuple):  # a tuple subclass: test before Sequence
        return np.array(tuple(value), dtype=np.int64)
    if isinstance(value, Sequence):
        return [_to_numpy(tvm, item) for item in value]
    return np.asarray(value)
