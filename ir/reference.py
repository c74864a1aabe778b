"""The golden path: run an IR model exactly as written, with onnxruntime's graph optimizations
off and one thread, so its outputs are a stable reference for drift measurements."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as oir
import onnxruntime as ort

from ir.errors import AsicperfError, first_line
from ir.low_precision import runnable_on_cpu


def reference_session(model: oir.Model | bytes) -> ort.InferenceSession:
    """An onnxruntime CPU session on the in-memory model or its serialized bytes."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        data = model if isinstance(model, bytes) else oir.to_proto(model).SerializeToString()
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad models
        raise AsicperfError(f"onnxruntime cannot load the model: {first_line(error)}") from error


def run_reference(model: oir.Model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The model's outputs on `feeds`, in graph output order. A bfloat16 model onnxruntime has
    no kernels for runs emulated: FP32 arithmetic on values rounded to bfloat16."""
    session = reference_session(runnable_on_cpu(model))
    try:
        return session.run(None, dict(feeds))
    except Exception as error:
        raise AsicperfError(f"onnxruntime failed to run the model: {first_line(error)}") from error
