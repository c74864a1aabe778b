"""A per-layer profile (`runner profile`): where a compiled model's time goes, layer by layer in
the IR's node ids, each layer placed under the roofline of the device it ran on, with rollups by
op type and by the pass that created the nodes, and the layers' sum checked against the
end-to-end latency measured in the same runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from runner.results.document import ResultDocument
from runner.results.model import TargetInfoRecord
from runner.results.op import RooflineRecord
from runner.results.record import Record, json_key


@dataclass(frozen=True, kw_only=True)
class ProfileLayer(Record):
    """One layer as a profiler or the reference fallback ran it. Figures that need FLOPs and
    bytes are None for a layer with no nodes (its time is still counted) or with a node whose
    cost the op table does not know (a partial sum would flatter it)."""

    name: str  # the profiler's own name
    kind: str  # the profiler's layer or kernel type
    piece: int  # the executable's piece (segment) it ran in
    nodes: tuple[str, ...]  # IR node ids after the pipeline; () when unmapped
    original_nodes: tuple[str, ...]  # the imported nodes they stand for (provenance)
    op_types: tuple[str, ...]  # distinct, in node order
    passes: tuple[str, ...]  # the passes that created its nodes; () for imported nodes only
    time_ms: float  # median over the runs
    spread_ms: float  # max - min over the runs
    share: float  # of the layers' total
    flops: int | None
    nbytes: int | None = json_key("bytes")
    gflops: float | None
    gbps: float | None
    dtype: str | None  # the compute ceiling it is judged against (fp32, int8, ...)
    bound: str | None  # "compute" or "memory"; None without costs or ceilings
    roofline_ms: float | None  # the time the roofline allows for its work
    roofline_fraction: float | None  # roofline_ms / time_ms
    lost_ms: float | None  # time_ms - roofline_ms
    detail: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class ProfileGroup(Record):
    """Layers rolled up under one key (an op-type combination, or the passes that made them):
    every layer is in exactly one group, so the groups' times add up to the total."""

    key: str
    layers: int
    time_ms: float
    share: float
    roofline_ms: float | None  # None when a layer in the group has none
    roofline_fraction: float | None
    lost_ms: float | None
    bound: str | None  # the bound of most of its judged time
    dtypes: tuple[str, ...]  # the ceilings its layers were judged against


@dataclass(frozen=True, kw_only=True)
class ProfileResult(ResultDocument):
    KIND: ClassVar[str] = "profile"

    model: str
    ir_fingerprint: str  # of the model as loaded, before any pass
    target: str
    target_info: TargetInfoRecord
    pipeline: str | None  # as given
    resolved_pipeline: str | None  # bound to the target
    batch_size: int
    runs: int
    profilers: tuple[str, ...]  # each piece's source: the target's profiler or the fallback
    roofline: RooflineRecord
    layers: tuple[ProfileLayer, ...]  # slowest first
    by_op_type: tuple[ProfileGroup, ...]
    by_pass: tuple[ProfileGroup, ...]
    total_ms: float  # the layers' sum
    end_to_end_ms: float  # median over the same runs
    end_to_end_runs_ms: tuple[float, ...]
    overhead_ms: float  # end_to_end_ms - total_ms
    unmapped_ms: float  # time in layers with no nodes
