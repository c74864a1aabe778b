"""The tvm target's compiler side: the cleanup lowering, TVM's ONNX frontend and `tvm.compile`
through the project's schedule rules, the cache of built libraries, and sessions over the
Relax VM. `targets.tvm_target` (what the registry imports) imports this module when it
compiles or runs a model; this module imports TVM itself only inside functions.
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
from typing import Any

import numpy as np
import onnx
import onnx_ir as oir

from ir.errors import AsicperfError, first_line
from ir.files import cache_root, write_text_atomically
from ir.fingerprint import fingerprint
from ir.model_io import copy_model
from passes.audit import PassRecord, config_to_json
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline
from targets.api import Capabilities, CompiledModel, Session, graph_io_names
from targets.compile_record import compile_record, op_count_changes, op_counts
from targets.hardware.host import detect_cpu
from targets.tvm_profile import LoweredNode, lowered_nodes
from targets.tvm_schedules.apply import FunctionSchedule
from targets.tvm_schedules.host_tuning import CpuTuning, host_tuning
from targets.tvm_schedules.mcpu import McpuChoice, choose_mcpu
from targets.tvm_schedules.pipeline import cpu_pipeline
from targets.tvm_schedules.profile import ProfiledRun, profile_calls, profile_runs
from targets.tvm_schedules.rules import cpu_rules
from targets.tvm_schedules.winograd import MIN_CHANNELS
from targets.tvm_schedules.winograd_rule import WinogradRule
from targets.tvm_target import DTYPES, FUSED_OPS, LOWERING, TvmConfig

CACHE_SCHEMA = "asicperf.tvm-cache/2"  # bump when the way an artifact is built changes
# Converters named after an ONNX op that implement a different op: TVM's "Attention" is
# com.microsoft's (packed QKV weight), not ONNX-23's Attention(Q, K, V).
_NOT_THE_ONNX_OP = frozenset({"Attention"})


@dataclass(frozen=True)
class _Artifact:
    """What `load` needs: the compiled module, its parameters' names in order, and how many
    outputs `main` returns (more than one come as a tuple); and the nodes of the model it was
    built from, which the profile maps the VM's calls to (`targets.tvm_profile`)."""

    module: Any  # tvm.runtime.Executable (just built) or tvm.runtime.Module (from the cache)
    params: tuple[str, ...]
    outputs: int
    lowered: tuple[LoweredNode, ...]


@dataclass(frozen=True)
class _Build:
    """A compiled library and what scheduled each of its functions (empty when unscheduled)."""

    module: Any
    schedules: tuple[FunctionSchedule, ...]


def cache_dir() -> Path:
    """`$ASICPERF_CACHE/tvm`, beside the host measurements."""
    return cache_root() / "tvm"


@dataclass(frozen=True)
class Lowering:
    """What the cleanup (`LOWERING`) did to one model, for the compile record: the fingerprint
    and op types of the model before, the passes' records, the fingerprint after."""

    source_fingerprint: str
    source_ops: tuple[str, ...]
    records: tuple[PassRecord, ...]
    fingerprint: str


def lower(model: oir.Model) -> tuple[oir.Model, Lowering]:
    """The cleanup passes on a copy (the caller's model is never touched), and their account."""
    result = run_pipeline(copy_model(model), parse_pipeline(LOWERING))
    source_ops = tuple(node.op_type for node in model.graph)
    lowering = Lowering(
        result.records[0].in_fingerprint, source_ops, result.records, result.fingerprint
    )
    return result.model, lowering


def compile_tvm(
    name: str,
    model: oir.Model,
    config: TvmConfig,
    capabilities: Capabilities,
    prepared: Mapping[str, Lowering],
) -> CompiledModel:
    """Build `model` for target `name`. A model that `prepare` returned (found in `prepared` by
    its fingerprint) is already lowered and is built as it is, with that lowering's account;
    any other model is lowered first. The record describes the lowering and the build either
    way."""
    tvm = import_tvm()
    start = time.perf_counter()
    lowering = prepared.get(fingerprint(model))
    lowered = model
    if lowering is None:
        lowered, lowering = lower(model)
    _check_ops(lowered, capabilities)
    mcpu = _host_mcpu(tvm, config)
    target = _tvm_target(tvm, config, mcpu.mcpu)
    tuning = _tuning(target)
    key = _cache_key(tvm, lowering.fingerprint, str(target), config, tuning)
    path = cache_dir() / f"{key}.so" if config.cache else None
    built = _load_cached(tvm, path)
    cache_hit = built is not None
    if built is None:
        built = _build(tvm, oir.to_proto(lowered), target, config)
        if path is not None:
            _store(built, path)
    wall_ms = (time.perf_counter() - start) * 1e3
    after = [node.op_type for node in lowered.graph]
    inputs, outputs = graph_io_names(model)
    record = compile_record(
        target=name,
        config=config_to_json(config),
        ir_fingerprint=lowering.source_fingerprint,
        artifact_fingerprint=f"sha256:{key}",
        wall_ms=wall_ms,
        nodes=(len(lowering.source_ops), len(after)),
        changes=op_count_changes(
            op_counts(list(lowering.source_ops)),
            op_counts(after),
            rule="tvm-lowering",
            who=LOWERING,
        ),
        extra={
            "lowering": [r.to_json() for r in lowering.records],
            "tvm_target": json.loads(str(target)),
            "mcpu": mcpu.to_json(),
            "cache_hit": cache_hit,
            "cache_path": str(path) if path else None,
            "precision": "as in the model",
            **_schedule_summary(built.schedules, config, tuning),
        },
    )
    artifact = _Artifact(
        built.module,
        graph_io_names(lowered)[0],
        len(outputs),
        lowered_nodes(lowered, lowering.records, model),
    )
    return CompiledModel(
        name,
        record.in_fingerprint,
        record.config,
        artifact,
        record,
        inputs,
        outputs,
        cache_hit=cache_hit,
    )


def load_session(name: str, compiled: CompiledModel) -> TvmSession:
    """A session over the Relax VM on the configured device."""
    tvm = import_tvm()
    from tvm import relax

    config = TvmConfig(**compiled.options)
    device = tvm.cuda(0) if config.device == "cuda" else tvm.cpu(0)
    machine = relax.VirtualMachine(compiled.payload.module, device)
    return TvmSession(tvm, machine, device, compiled.payload, name)


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

    def profile_runs(
        self, feeds: Mapping[str, np.ndarray], runs: int
    ) -> tuple[tuple[int, ...], list[ProfiledRun]]:
        """The input tensors' data addresses (in `input_names` order) and `runs` runs with
        every compiled function's call timed (see `profile_runs`)."""
        arguments = self._arguments(feeds)
        addresses = tuple(argument.data_ptr() for argument in arguments)
        return addresses, profile_runs(self._machine, arguments, runs)

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._artifact.params

    @property
    def lowered(self) -> tuple[LoweredNode, ...]:
        """The nodes of the model TVM built, in graph order."""
        return self._artifact.lowered

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


def import_tvm() -> ModuleType:
    """TVM, with its thread pool sized to every core: by default it assumes two hyper-threads
    per core on x86 and starts half as many workers as there are CPUs (one on a 2-core VM). The
    pool reads `TVM_NUM_THREADS` when it starts, at the first parallel kernel; a value the user
    set is kept."""
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    try:
        import tvm
    except Exception as error:  # ImportError, or a broken native library
        raise AsicperfError(f"cannot import tvm: {first_line(error)}") from error
    if not tvm.runtime.enabled("llvm"):  # the host code of every build, CUDA's included
        raise AsicperfError("target 'tvm': this TVM build has no LLVM backend")
    return tvm


@functools.cache
def converter_capabilities() -> Capabilities:
    """The ONNX (default domain) ops TVM's Relax frontend has a converter for, plus `If`,
    which the importer converts itself."""
    import_tvm()  # a one-line error without TVM
    from tvm.relax.frontend.onnx import onnx_frontend

    names = (set(onnx_frontend._get_convert_map()) | {"If"}) - _NOT_THE_ONNX_OP
    ops = frozenset(("", name) for name in names if onnx.defs.has(name))
    return Capabilities(ops, DTYPES, fused_ops=FUSED_OPS)


def _check_ops(model: oir.Model, capabilities: Capabilities) -> None:
    missing = sorted(
        {
            f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            for node in oir.traversal.RecursiveGraphIterator(model.graph)
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
        passes = cpu_pipeline(cpu_rules(), _tuning(target), schedules, config.winograd)
        pipeline = {"relax_pipeline": passes}
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
        "winograd": _winograd_summary(schedules, config),
        "cpu_tuning": tuning.to_json(),
        "schedule_rules": dict(sorted(by_rule.items())),
        "schedules": [s.to_json() for s in schedules],
    }


def _winograd_summary(schedules: Sequence[FunctionSchedule], config: TvmConfig) -> str:
    """Whether the Winograd rewrite was on and whether it took any convolution of this model
    (none with a symbolic batch: it needs static shapes)."""
    if not config.winograd:
        return "off: every convolution direct"
    transforms = sum(s.rule == WinogradRule.name for s in schedules)
    if transforms == 0:
        return (
            f"on, but no convolution qualified (3x3, stride 1, float32, static shapes, constant "
            f"weights, at least {MIN_CHANNELS} input channels): every convolution direct"
        )
    return (
        f"on: {transforms} transform functions (the 'winograd' rule) with the batched matmuls "
        "between them compute the 3x3 stride-1 convolutions as Winograd F(2x2, 3x3)"
    )


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
