"""onnxruntime's session profiler, as the `onnxruntime` target's per-layer profile.

onnxruntime writes a Chrome trace: one "Node" event per kernel call (`<node name>_kernel_time`,
with `op_name` and `provider`) inside one "model_run" event per run, so each kernel's time is
split by run from the run it falls in. The node names are those of onnxruntime's optimized
graph, which the same session saves; `targets.ort_node_map` maps them to IR node ids. Every
node of the model is named first (by its IR id where it has none): onnxruntime's events for an
unnamed node carry a name its saved graph does not.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
import onnx_ir as oir

from ir.errors import AsicperfError, first_line
from ir.node_ids import NODE_ID_KEY
from targets.ort_node_map import KernelNode, kernel_ir_nodes
from targets.profiling import LayerTiming, TargetProfile

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort

# Opens an onnxruntime session on a model file with profiling on: (model path, folder for the
# optimized model `optimized.onnx` and the trace `profile*.json`).
OpenSession = Callable[[str, Path], "ort.InferenceSession"]
_KERNEL_SUFFIX = "_kernel_time"
_SOURCE = "onnxruntime session profiler"


def profile_onnxruntime(
    payload: bytes,
    feeds: Mapping[str, np.ndarray],
    runs: int,
    open_session: OpenSession,
    target: str,
) -> TargetProfile:
    """One warm-up run, then `runs` runs timed end to end, each kernel's time per run."""
    proto = onnx.load_from_string(payload)
    name_every_node(proto.graph)
    model = oir.serde.deserialize_model(proto)
    with tempfile.TemporaryDirectory(prefix="asicperf-ort-profile-") as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(proto.SerializeToString())
        session = open_session(os.fspath(path), Path(folder))
        end_to_end = _timed_runs(session, feeds, runs + 1, target)[1:]
        events = json.loads(Path(session.end_profiling()).read_text())
        optimized = onnx.load(Path(folder) / "optimized.onnx", load_external_data=False)
    kernels = [
        KernelNode(node.name, node.op_type, tuple(node.input), tuple(node.output))
        for node in optimized.graph.node
    ]
    nodes = kernel_ir_nodes(kernels, model)
    layers = [
        LayerTiming(name, kind, nodes.get(name, ()), times, {"provider": provider})
        for name, (kind, provider, times) in kernel_times(events, skip=1).items()
    ]
    return TargetProfile(_SOURCE, tuple(layers), tuple(end_to_end))


def name_every_node(graph: onnx.GraphProto) -> None:
    """Give unnamed nodes (and all but the first of nodes sharing a name) a name of their own:
    the IR id, else the position."""
    taken: set[str] = set()
    for position, node in enumerate(graph.node):
        if not node.name or node.name in taken:
            ids = [p.value for p in node.metadata_props if p.key == NODE_ID_KEY]
            base = ids[0] if ids else f"node{position}"
            name, suffix = base, 0
            while name in taken:
                suffix += 1
                name = f"{base}_{suffix}"
            node.name = name
        taken.add(node.name)


def _timed_runs(
    session: ort.InferenceSession, feeds: Mapping[str, np.ndarray], count: int, target: str
) -> list[float]:
    """Milliseconds of each of `count` runs."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        try:
            session.run(None, dict(feeds))
        except Exception as error:  # onnxruntime's own exception types
            raise AsicperfError(f"target '{target}' failed to run: {first_line(error)}") from error
        times.append((time.perf_counter() - start) * 1e3)
    return times


def kernel_times(
    events: list[dict[str, Any]], skip: int
) -> dict[str, tuple[str, str, tuple[float, ...]]]:
    """Each kernel's (op type, provider, milliseconds per run) from a trace's events, leaving
    out the first `skip` runs; kernels in the order they first ran, a kernel absent from a
    run (a branch not taken) at 0 in it."""
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[
        skip:
    ]
    kinds: dict[str, tuple[str, str]] = {}
    spent: dict[str, list[float]] = {}
    for event in sorted(events, key=lambda e: e.get("ts", 0)):
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith(_KERNEL_SUFFIX):
            continue
        run = next((i for i, (a, b) in enumerate(windows) if a <= event["ts"] <= b), None)
        if run is None:
            continue
        kernel = name.removesuffix(_KERNEL_SUFFIX)
        args = event.get("args", {})
        kinds.setdefault(kernel, (args.get("op_name", "?"), args.get("provider", "?")))
        spent.setdefault(kernel, [0.0] * len(windows))[run] += event["dur"] / 1e3
    return {kernel: (*kinds[kernel], tuple(times)) for kernel, times in spent.items()}
