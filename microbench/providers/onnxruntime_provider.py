"""onnxruntime on the CPU running each case's single-op ONNX graph: what a deployed model's op
costs in a production runtime. Inputs and the output live in OrtValues bound once, so `run` is
only `run_with_iobinding`, with no conversion or allocation timed."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from onnx import helper

from ir.errors import AsicperfError, first_line
from microbench.ops import BenchCase
from microbench.providers.base import Kernel, Provider


class OnnxRuntimeProvider(Provider):
    """The CPU execution provider with default graph optimisations and one intra-op thread per
    core."""

    name = "onnxruntime"

    def unsupported_reason(self, case: BenchCase) -> str | None:
        if case.op in ("gemm", "batch_gemm", "gemv") and case.dtype == "bf16":
            return "the onnxruntime CPU execution provider has no bf16 MatMul kernel"
        return None

    def prepare(self, case: BenchCase, inputs: Mapping[str, np.ndarray]) -> Kernel:
        reason = self.unsupported_reason(case)
        if reason is not None:
            raise AsicperfError(f"onnxruntime cannot run {case}: {reason}")
        model = case.onnx_model()
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        try:
            session = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # any gap in the runtime's kernels, reported on one line
            raise AsicperfError(f"onnxruntime cannot load {case}: {first_line(error)}") from error
        binding = session.io_binding()
        values = {
            name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
            for name, value in inputs.items()
        }
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        tensor_type = model.graph.output[0].type.tensor_type
        shape = [dim.dim_value for dim in tensor_type.shape.dim]
        output = ort.OrtValue.ortvalue_from_shape_and_type(shape, tensor_type.elem_type)
        binding.bind_ortvalue_output("y", output)
        host = np.empty(shape, helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        bound = _Bound(session, binding, values, output, host)
        return Kernel(bound.run, bound.result)


@dataclass(frozen=True)
class _Bound:
    """A session with its inputs and output bound; it holds the OrtValues because the binding
    keeps only raw pointers into them."""

    session: ort.InferenceSession
    binding: ort.IOBinding
    inputs: dict[str, ort.OrtValue]
    output: ort.OrtValue
    host: np.ndarray

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def result(self) -> np.ndarray:
        # A raw copy: OrtValue.numpy() refuses bf16, which numpy only knows via ml_dtypes.
        ctypes.memmove(self.host.ctypes.data, self.output.data_ptr(), self.host.nbytes)
        return self.host.copy()
