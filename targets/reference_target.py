"""The `reference` target: the golden path every other target is compared with. onnxruntime
with all graph optimizations off and one thread: slow, but it runs the model as written. A
bfloat16 model, for which onnxruntime's CPU build has no kernels, runs emulated exactly as the
pass audit's numeric check runs it (`ir.low_precision`), and its compile record says so."""

from __future__ import annotations

import time

import onnx_ir as ir
import onnxruntime as ort

from ir.fingerprint import fingerprint
from ir.low_precision import EMULATED_KEY, runnable_on_cpu
from ir.reference import reference_session
from passes.base import PassConfig
from targets.api import CompiledModel, Session, Target, TargetInfo, graph_io_names
from targets.compile_record import artifact_digest, compile_record
from targets.device import host_device
from targets.onnxruntime_target import OnnxRuntimeSession
from targets.ort_kernels import OnnxRuntimeClaims


class ReferenceTarget(OnnxRuntimeClaims, Target):
    name = "reference"

    def info(self) -> TargetInfo:
        return TargetInfo(
            self.name,
            f"onnxruntime {ort.__version__}, optimizations off",
            host_device(),
            available=True,
            hardware="host",
        )

    def prepare(self, model: ir.Model) -> ir.Model:
        return runnable_on_cpu(model)

    def compile(self, model: ir.Model, config: PassConfig) -> CompiledModel:
        start = time.perf_counter()
        data = ir.to_proto(model).SerializeToString()
        nodes = sum(1 for _ in model.graph)
        record = compile_record(
            target=self.name,
            config={},
            ir_fingerprint=fingerprint(model),
            artifact_fingerprint=artifact_digest(data),
            wall_ms=(time.perf_counter() - start) * 1e3,
            nodes=(nodes, nodes),
            extra={"precision": _precision(model)},
        )
        inputs, outputs = graph_io_names(model)
        return CompiledModel(self.name, record.in_fingerprint, {}, data, record, inputs, outputs)

    def load(self, compiled: CompiledModel, batch_size: int) -> Session:
        return OnnxRuntimeSession(reference_session(compiled.payload), self.name)


def _precision(model: ir.Model) -> str:
    emulated = model.metadata_props.get(EMULATED_KEY)
    if emulated is None:
        return "as in the model"
    return f"{emulated} emulated: FP32 arithmetic on values rounded to {emulated}"
