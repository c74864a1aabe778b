"""Compiling a model for a target with fallback: the capability check, the partition, one
compile per segment (the target's own, or the reference path's), and one session over them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as oir

from ir.fingerprint import fingerprint
from ir.ops import infer_missing_shapes
from ir.shape_inference import infer_value_types
from passes.audit import PassRecord, config_to_json
from passes.base import PassConfig
from targets.api import CompiledModel, Session, Target
from targets.compile_record import compile_record
from targets.partition import PartitionPlan, check_dtypes, plan_partition, segment_model
from targets.reference_target import ReferenceTarget


@dataclass(frozen=True)
class Executable:
    """A model compiled for a target: its partition and one compiled piece per segment."""

    target: Target
    plan: PartitionPlan
    pieces: tuple[tuple[Target, CompiledModel], ...]
    record: PassRecord
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    defaults: Mapping[str, np.ndarray]  # initializers that are also graph inputs (IR < 4)

    @property
    def cache_hit(self) -> bool:
        return all(compiled.cache_hit for _, compiled in self.pieces)

    def session(self, batch_size: int = 1) -> Session:
        sessions = [target.load(compiled, batch_size) for target, compiled in self.pieces]
        if len(sessions) == 1:
            return sessions[0]
        return _SegmentedSession(self, sessions)


def compile_model(target: Target, model: oir.Model, config: PassConfig | None = None) -> Executable:
    """Check dtypes, partition by declared ops, and compile every segment."""
    config = config if config is not None else target.config_type()
    source_fingerprint = fingerprint(model)
    model = target.prepare(model)
    capabilities = target.capabilities()
    check_dtypes(model, target, capabilities)
    plan = plan_partition(model, target, capabilities)
    start = time.perf_counter()
    if not plan.whole_on_target:
        model = _typed(model)
    if plan.whole_on_target:
        pieces = ((target, target.compile(model, config)),)
    else:
        reference = ReferenceTarget()
        pieces = tuple(
            (target, target.compile(segment_model(model, s), config))
            if s.on_target
            else (reference, reference.compile(segment_model(model, s), reference.config_type()))
            for s in plan.segments
        )
    wall_ms = (time.perf_counter() - start) * 1e3
    inputs = tuple(v.name or "" for v in model.graph.inputs if not v.is_initializer())
    outputs = tuple(v.name or "" for v in model.graph.outputs)
    nodes = sum(1 for _ in model.graph)
    own = [compiled.record for _, compiled in pieces]
    record = compile_record(
        target=target.name,
        config=config_to_json(config),
        ir_fingerprint=source_fingerprint,
        artifact_fingerprint=own[0].out_fingerprint if len(own) == 1 else _joined(own),
        wall_ms=wall_ms,
        nodes=(nodes, sum(r.node_count[1] for r in own)),
        changes=tuple(change for r in own for change in r.changes),
        extra={
            "partition": plan.to_json(),
            "segments": [r.to_json() for r in own],
            "cache_hit": all(compiled.cache_hit for _, compiled in pieces),
        },
    )
    defaults = {
        v.name or "": v.const_value.numpy()
        for v in model.graph.inputs
        if v.is_initializer() and v.const_value is not None
    }
    return Executable(target, plan, pieces, record, inputs, outputs, defaults)


def _typed(model: oir.Model) -> oir.Model:
    """Segments exchange values as graph inputs and outputs, which need types: values that
    passes created without one get them from shape inference (ONNX's, then the op table's),
    on a copy, so the caller's model and its fingerprint stay as they were."""
    if all(out.type is not None for node in model.graph for out in node.outputs if out.name):
        return model
    proto = oir.to_proto(model)
    copy = oir.serde.deserialize_model(proto)
    infer_value_types(copy, proto, Path("<partition>"))
    infer_missing_shapes(copy)
    return copy


def _joined(records: list[PassRecord]) -> str:
    return "segments:" + ",".join(r.out_fingerprint.removeprefix("sha256:")[:12] for r in records)


class _SegmentedSession(Session):
    """Runs the segments in order, passing border values by name."""

    def __init__(self, executable: Executable, sessions: list[Session]) -> None:
        self._executable = executable
        self._sessions = sessions

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        values: dict[str, np.ndarray] = {**self._executable.defaults, **feeds}
        for segment, session in zip(self._executable.plan.segments, self._sessions, strict=True):
            outputs = session.run({name: values[name] for name in segment.inputs})
            values.update(zip(segment.outputs, outputs, strict=True))
        return [values[name] for name in self._executable.output_names]
