"""The `reference` target: the golden path every other target is compared with. onnxruntime
with all graph optimizations off and one thread: slow, but it runs the model as written. A
bfloat16 model, for which onnxruntime's CPU build has no kernels, runs emulated exactly as the
pass audit's numeric check runs it (`ir.low_precision`), and its compile record says so.

Like the onnxruntime target, it imports onnxruntime and onnx_ir only to compile and run."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ir.errors import first_line
from passes.base import PassConfig
from targets.api import CompiledModel, Session, Target, TargetInfo, graph_io_names
from targets.compile_record import artifact_digest, compile_record
from targets.device import host_device
from targets.installed import installed_version
from targets.onnxruntime_target import DISTRIBUTIONS, OnnxRuntimeClaims, OnnxRuntimeSession

if TYPE_CHECKING:
    import onnx_ir as oir


class ReferenceTarget(OnnxRuntimeClaims, Target):
    name = "reference"

    def info(self) -> TargetInfo:
        try:
            version = installed_version("onnxruntime", DISTRIBUTIONS)
        except Exception as error:  # not installed, or its native library fails to load
            why = f"cannot import onnxruntime: {first_line(error)}"
            return TargetInfo(self.name, "?", host_device(), available=False, why_not=why)
        return TargetInfo(
            self.name,
            f"onnxruntime {version}, optimizations off",
            host_device(),
            available=True,
            hardware="host",
        )

    def prepare(self, model: oir.Model) -> oir.Model:
        from ir.low_precision import runnable_on_cpu

        return runnable_on_cpu(model)

    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        import onnx_ir as oir

        from ir.fingerprint import fingerprint

        start = time.perf_counter()
        data = oir.to_proto(model).SerializeToString()
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
        from ir.reference import reference_session

        return OnnxRuntimeSession(reference_session(compiled.payload), self.name)


def _precision(model: oir.Model) -> str:
    from ir.low_precision import EMULATED_KEY

    emulated = model.metadata_props.get(EMULATED_KEY)
    if emulated is None:
        return "as in the model"
    return f"{emulated} emulated: FP32 arithmetic on values rounded to {emulated}"
