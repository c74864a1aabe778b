"""ONNX shape inference for a loaded model, isolated from the caller's process.

ONNX's C++ inference trusts node attributes and can segfault on a malformed model, so it runs
in a long-lived child process; a crash becomes a `ModelLoadError` instead of killing the CLI.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir

from ir.errors import ModelLoadError, first_line, root_cause
from ir.proto_walk import graph_protos
from ir.shape_chains import all_static, shape_values, static_shapes, with_constants

logger = logging.getLogger(__name__)

# Initializers up to this many elements go to shape inference with their values (shape tensors
# need them for data propagation); bigger ones go as typed graph inputs so weights are not copied.
_INFERENCE_MAX_ELEMENTS = 1024


def infer_value_types(model: oir.Model, proto: onnx.ModelProto, path: Path) -> None:
    """Give every value the type and shape ONNX infers for it (types in full, not just dtypes).

    onnx_ir's `ShapeInferencePass` copies only the element dtype, which turns a sequence (or
    optional) value into a plain tensor and makes the re-exported model fail to load in ONNX
    Runtime. A model ONNX cannot infer is still loaded, without the inferred types.
    """
    failure = None
    skeleton = _inference_skeleton(proto)
    try:
        inferred = _settle_shape_chains(skeleton, _inferred(skeleton, path), path)
        inferred_model = oir.serde.deserialize_model(inferred)
    except _InferenceFailed as error:
        failure = str(error)
    except oir.serde.SerdeError as error:  # inference wrote a type onnx_ir rejects
        failure = first_line(root_cause(error))
    if failure is not None:
        logger.warning("%s: shape inference failed, types left as stored: %s", path, failure)
        return
    for graph, inferred_graph in zip(model.graphs(), inferred_model.graphs(), strict=True):
        values = oir.convenience.create_value_mapping(graph, include_subgraphs=False)
        found = oir.convenience.create_value_mapping(inferred_graph, include_subgraphs=False)
        for name, value in values.items():
            inferred_value = found.get(name)
            if inferred_value is None:
                continue
            if inferred_value.type is not None and value.type != inferred_value.type:
                value.type = inferred_value.type
            if inferred_value.shape is not None and value.shape != inferred_value.shape:
                value.shape = inferred_value.shape


def _inferred(skeleton: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """ONNX's inference of `skeleton`; raises `_InferenceFailed`, or ModelLoadError on a crash."""
    try:
        inferred_bytes = _SHAPE_INFERENCE.run(skeleton.SerializeToString())
    except _InferenceCrashed as error:
        raise ModelLoadError(
            f"{path}: ONNX shape inference crashed on this model ({error}); "
            "the model is probably malformed"
        ) from error
    inferred = onnx.ModelProto()
    inferred.ParseFromString(inferred_bytes)
    return inferred


def _settle_shape_chains(
    skeleton: onnx.ModelProto, inferred: onnx.ModelProto, path: Path
) -> onnx.ModelProto:
    """Infer again with the values of shape computations as constants, while that helps:
    without it `ir show bert-base --dim batch=1` counted only the mask's FLOPs, every shape
    after the position-id Slice being unknown (see `ir.shape_chains`). Bounded: stops when all
    shapes are static, when no further value can be computed, or after a few rounds."""
    folded: dict[str, np.ndarray] = {}
    for _ in range(_MAX_SETTLING_ROUNDS):
        shapes = static_shapes(inferred.graph)
        if all_static(inferred.graph, shapes):
            break
        computed = shape_values(skeleton, shapes, _INFERENCE_MAX_ELEMENTS)
        if computed.keys() <= folded.keys():
            break
        folded = computed
        try:
            inferred = _inferred(with_constants(skeleton, folded), path)
        except _InferenceFailed as error:  # keep what the previous round settled
            logger.warning("%s: shape inference with shape values failed: %s", path, error)
            break
    return inferred


# Rounds of `_settle_shape_chains`: each settles the chains fed by the shapes the last one fixed.
_MAX_SETTLING_ROUNDS = 4


class _InferenceFailed(Exception):
    """ONNX shape inference reported an error for the model."""


class _InferenceCrashed(Exception):
    """The process running ONNX shape inference died (the C++ code can segfault)."""


# Runs in the worker process: say "R" once onnx is imported, then read length-prefixed
# ModelProtos and answer each with a length-prefixed status byte (0 = inferred model, 1 = error
# text) and payload, until stdin closes.
_WORKER_SOURCE = """
import os, sys
import onnx
channel = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
channel.write(b"R")
channel.flush()
requests = sys.stdin.buffer
while True:
    header = requests.read(8)
    if len(header) < 8:
        break
    model = onnx.ModelProto()
    model.ParseFromString(requests.read(int.from_bytes(header, "little")))
    try:
        answer = b"\\x00" + onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=True
        ).SerializeToString()
    except Exception as error:
        answer = b"\\x01" + f"{type(error).__name__}: {error}".encode()
    channel.write(len(answer).to_bytes(8, "little") + answer)
    channel.flush()
"""


class _ShapeInferenceWorker:
    """ONNX shape inference in a long-lived child process.

    Its C++ code trusts node attributes and segfaults on some out-of-range values (e.g. a
    LayerNormalization axis of 2**31), which would kill the caller; a child that dies is
    reported as `_InferenceCrashed` and replaced on the next call. Where no child can start
    (no usable `sys.executable`), inference runs in this process, unprotected.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._unavailable = False

    def run(self, model_bytes: bytes) -> bytes:
        """The inferred model's bytes; raises `_InferenceFailed` or `_InferenceCrashed`."""
        with self._lock:
            process = self._started()
            if process is None:
                return _infer_here(model_bytes)
            try:
                process.stdin.write(len(model_bytes).to_bytes(8, "little") + model_bytes)
                process.stdin.flush()
                header = process.stdout.read(8)
                answer = process.stdout.read(int.from_bytes(header, "little"))
            except (BrokenPipeError, ValueError):  # ValueError: pipe already closed
                header, answer = b"", b""
            if len(header) < 8 or not answer:
                self._process = None
                raise _InferenceCrashed(_death_reason(process))
        if answer[:1] == b"\x01":
            raise _InferenceFailed(" ".join(answer[1:].decode(errors="replace").split()))
        return answer[1:]

    def stop(self) -> None:
        """Close the worker's input so it exits, reap it, and allow a fresh start."""
        with self._lock:
            process, self._process = self._process, None
            self._unavailable = False
        if process is not None:
            process.stdin.close()
            process.stdout.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def forget_after_fork(self) -> None:
        """In a forked child the parent's worker (and maybe its held lock) is not ours."""
        self._lock = threading.Lock()
        self._process = None

    def _started(self) -> subprocess.Popen[bytes] | None:
        if self._unavailable:
            return None
        if self._process is not None and self._process.poll() is None:
            return self._process
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_SOURCE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as error:
            return self._give_up(str(error))
        if process.stdout.read(1) != b"R":
            return self._give_up(f"it died at start ({_death_reason(process)})")
        self._process = process
        return process

    def _give_up(self, why: str) -> None:
        logger.warning("ONNX shape inference runs unprotected in this process: %s", why)
        self._unavailable = True


def _infer_here(model_bytes: bytes) -> bytes:
    """What the worker does, in this process."""
    model = onnx.ModelProto()
    model.ParseFromString(model_bytes)
    try:
        inferred = onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=True
        )
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as error:
        raise _InferenceFailed(f"{type(error).__name__}: {' '.join(str(error).split())}") from error
    return inferred.SerializeToString()


def _death_reason(process: subprocess.Popen[bytes]) -> str:
    """Reap a dead worker and say how it died."""
    for pipe in (process.stdin, process.stdout):
        pipe.close()
    returncode = process.wait()
    if returncode < 0 and -returncode in signal.valid_signals():
        return f"signal {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


_SHAPE_INFERENCE = _ShapeInferenceWorker()
atexit.register(_SHAPE_INFERENCE.stop)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SHAPE_INFERENCE.forget_after_fork)


def _inference_skeleton(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model without the bytes of its big or external weights, which become typed inputs.

    Shape inference serializes the whole model; copying the weights would double a large model's
    memory for types that the weights' dims already give.
    """
    skeleton = onnx.ModelProto(ir_version=proto.ir_version)
    skeleton.opset_import.extend(proto.opset_import)
    imports = {entry.domain: entry.version for entry in proto.opset_import}
    if "ai.onnx" in imports and "" not in imports:
        skeleton.opset_import.append(onnx.helper.make_opsetid("", imports["ai.onnx"]))
    skeleton.functions.extend(proto.functions)
    source, graph = proto.graph, skeleton.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    graph.sparse_initializer.extend(source.sparse_initializer)
    input_names = {value.name for value in source.input}
    for tensor in source.initializer:
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        if not external and math.prod(tensor.dims) <= _INFERENCE_MAX_ELEMENTS:
            graph.initializer.append(tensor)
        elif tensor.name not in input_names:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
            )
            input_names.add(tensor.name)
    # onnx_ir reads the domain "ai.onnx" as the default domain; ONNX's inference does not.
    for _, subgraph in graph_protos(graph, None):
        for node in subgraph.node:
            if node.domain == "ai.onnx":
                node.domain = ""
    return skeleton
