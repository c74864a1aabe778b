"""sparsify: magnitude-prune the weights of MatMul, Gemm and Conv to a sparsity pattern.

A target's sparse kernels (2:4 tensor cores, block-sparse GEMMs, compressed weight streams) only
pay off when the zeros sit where the kernel expects them, so the pattern is the point:

- `N:M` keeps the N largest magnitudes in every group of M consecutive weights along the
  reduction axis (K of a MatMul/Gemm, the input channels of a Conv, at each kernel position);
- `RxC` prunes whole blocks of R output channels by C reduction elements, smallest L2 norm
  first, until `ratio` of the blocks are gone;
- `unstructured` prunes single weights, smallest magnitude first (it is the 1x1 block pattern).

The weights stay dense in the file, zeros written in. Each pruned initializer carries
`metadata_props["asicperf.sparsity"]`, a JSON object {pattern, output_axis, reduction_axis,
sparsity} that a target can read to pick a sparse kernel; it survives saving and loading.
Among equal magnitudes (or block norms) the later one in row-major order of the [kernel position,
output channel, reduction] view is pruned first, so results never depend on sort internals.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx_ir as oir

from ir.node_ids import describe_node, node_id
from passes.audit import ChangeKind
from passes.base import Pass, PassLog
from passes.contracts import CONSTANT_WEIGHTS
from passes.layer_scope import LayerScopeConfig
from passes.option_range import bounded
from passes.rewrite import constant_array, non_constant_reason

SPARSITY_KEY = "asicperf.sparsity"
PRUNABLE_OPS = ("Conv", "Gemm", "MatMul")
_WEIGHT_INPUT = 1  # Conv's W and MatMul/Gemm's B
_NODE_ID = re.compile(r"n\d+")


@dataclass(frozen=True)
class NOfM:
    """Keep the `n` largest of every `m` consecutive weights along the reduction axis."""

    n: int
    m: int
    rule = "n-of-m"

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    def blocker(self, rows: int, reduction: int) -> str | None:
        if reduction % self.m:
            return f"its reduction length {reduction} is not a multiple of {self.m}"
        return None

    def keep_mask(self, magnitude: np.ndarray) -> np.ndarray:
        """`magnitude` is [kernel positions, output channels, reduction]."""
        groups = magnitude.reshape(*magnitude.shape[:-1], -1, self.m)
        # A stable sort of the negated magnitudes lists equal ones in index order: earlier kept.
        order = np.argsort(-groups, axis=-1, kind="stable")
        keep = np.zeros(groups.shape, dtype=bool)
        np.put_along_axis(keep, order[..., : self.n], True, axis=-1)
        return keep.reshape(magnitude.shape)

    def layout(self, nonzero: np.ndarray, keep: np.ndarray) -> str:
        counts = nonzero.reshape(*nonzero.shape[:-1], -1, self.m).sum(axis=-1)
        low, high = int(counts.min()), int(counts.max())
        kept = f"{low}" if low == high else f"{low} to {high}"
        return f"every group of {self.m} along the reduction axis keeps {kept} nonzeros"


@dataclass(frozen=True)
class Blocks:
    """Prune whole `rows` x `cols` blocks (output channels x reduction), smallest L2 norm first;
    1x1 blocks are unstructured pruning."""

    rows: int
    cols: int

    @property
    def rule(self) -> str:
        return "unstructured" if self.unstructured else "block"

    @property
    def unstructured(self) -> bool:
        return (self.rows, self.cols) == (1, 1)

    def __str__(self) -> str:
        return "unstructured" if self.unstructured else f"{self.rows}x{self.cols}"

    def blocker(self, rows: int, reduction: int) -> str | None:
        if rows % self.rows:
            return f"its {rows} output channels are not a multiple of {self.rows}"
        if reduction % self.cols:
            return f"its reduction length {reduction} is not a multiple of {self.cols}"
        return None

    def scores(self, magnitude: np.ndarray) -> np.ndarray:
        """The L2 norm of each block of [kernel positions, output channels, reduction]."""
        positions, rows, reduction = magnitude.shape
        blocked = magnitude.reshape(
            positions, rows // self.rows, self.rows, reduction // self.cols, self.cols
        )
        return np.sqrt(np.square(blocked).sum(axis=(2, 4)))

    def expand(self, block_keep: np.ndarray) -> np.ndarray:
        """A per-block mask spread over the weights of each block."""
        return np.repeat(np.repeat(block_keep, self.rows, axis=1), self.cols, axis=2)

    def layout(self, nonzero: np.ndarray, keep: np.ndarray) -> str:
        if self.unstructured:
            zeros = (~nonzero).sum(axis=(0, 2))
            per_channel = nonzero.shape[0] * nonzero.shape[2]
            return (
                f"zeros per output channel: {int(zeros.min())} to {int(zeros.max())} "
                f"of {per_channel}"
            )
        kept = keep[:, :: self.rows, :: self.cols]
        return f"{int((~kept).sum())} of {kept.size} {self} blocks pruned, {int(kept.sum())} kept"


Pattern = NOfM | Blocks


def parse_pattern(text: str) -> Pattern:
    """`unstructured`, `N:M` (0 < N < M) or `RxC` (R, C >= 1); a ValueError says what is wrong."""
    if text == "unstructured":
        return Blocks(1, 1)
    if match := re.fullmatch(r"(\d+):(\d+)", text):
        n, m = int(match[1]), int(match[2])
        if not 0 < n < m:
            raise ValueError(f"pattern {text}: an N:M pattern needs 0 < N < M")
        return NOfM(n, m)
    if match := re.fullmatch(r"(\d+)x(\d+)", text):
        rows, cols = int(match[1]), int(match[2])
        if rows == 0 or cols == 0:
            raise ValueError(f"pattern {text}: block sides must be at least 1")
        return Blocks(rows, cols)
    raise ValueError(f"unknown pattern '{text}' (expected unstructured, N:M such as 2:4, or RxC)")


@dataclass(frozen=True)
class SparsifyConfig(LayerScopeConfig):
    """`pattern`: unstructured, N:M (2:4, 1:16) or RxC blocks (4x4, 1x16).
    `ratio`: fraction of weights (unstructured) or blocks (RxC) to prune, 0 <= ratio < 1; an N:M
    pattern fixes its own and takes none.
    `scope`: layer (each tensor pruned to the ratio) or global (one threshold over all tensors).
    `exclude`: op types (Conv, Gemm, MatMul) and node ids (n12) whose weights stay dense.
    `nodes` / `skip_nodes` (from LayerScopeConfig): the layers sensitivity analysis and drift
    budgets limit the pass to, or keep out of it."""

    pattern: str = "2:4"
    ratio: float | None = bounded(None, low=0, high=1, high_open=True)
    scope: Literal["layer", "global"] = "layer"
    exclude: tuple[str, ...] = ()

    def layer_op_types(self) -> frozenset[str]:
        return frozenset(PRUNABLE_OPS)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scope not in ("layer", "global"):
            raise ValueError(f"unknown scope '{self.scope}' (expected layer or global)")
        pattern = parse_pattern(self.pattern)
        if isinstance(pattern, NOfM):
            if self.ratio is not None:
                raise ValueError(f"pattern {pattern} fixes its sparsity; ratio does not apply")
            if self.scope == "global":
                raise ValueError(
                    f"pattern {pattern} prunes within each group; scope=global does not apply"
                )
        elif self.ratio is None:
            raise ValueError(f"pattern {pattern} needs ratio=<fraction to prune, 0 <= ratio < 1>")
        for item in self.exclude:
            if item not in PRUNABLE_OPS and not _NODE_ID.fullmatch(item):
                raise ValueError(
                    f"exclude item '{item}' is neither a node id (n<number>) nor a pruned op "
                    f"({', '.join(PRUNABLE_OPS)})"
                )


@dataclass(frozen=True)
class _Weight:
    """A weight initializer that will be pruned, seen as [kernel positions, output channels,
    reduction] through `axes` (the transpose that gives that order)."""

    value: oir.Value
    readers: tuple[oir.Node, ...]
    array: np.ndarray
    axes: tuple[int, ...]

    def canonical(self, array: np.ndarray) -> np.ndarray:
        transposed = array.transpose(self.axes)
        return transposed.reshape(-1, *transposed.shape[-2:])

    def from_canonical(self, canonical: np.ndarray) -> np.ndarray:
        shaped = canonical.reshape([self.array.shape[axis] for axis in self.axes])
        return shaped.transpose(np.argsort(self.axes))

    def magnitude(self) -> np.ndarray:
        return np.abs(self.canonical(self.array).astype(np.float64))

    def describe(self) -> str:
        return _describe(self.value, self.readers)


class Sparsify(Pass):
    """Zero weights of MatMul/Gemm B and Conv W to a target-friendly pattern, by magnitude."""

    name = "sparsify"
    summary = "magnitude-prune MatMul/Gemm/Conv weights to N:M, block or unstructured sparsity"
    config_type = SparsifyConfig
    requires = (CONSTANT_WEIGHTS,)  # only initializers are pruned

    def run(self, model: oir.Model, log: PassLog) -> None:
        config = self.config
        pattern = parse_pattern(config.pattern)
        weights = []
        for value, readers in _weight_readers(model).items():
            reason = self._blocker(value, readers, pattern)
            if reason is not None:
                log.skip(readers, rule=pattern.rule, reason=reason)
                continue
            array = constant_array(value)
            weights.append(_Weight(value, readers, array, _view_axes(readers[0], array.ndim)))
        if isinstance(pattern, NOfM):
            masks = [pattern.keep_mask(weight.magnitude()) for weight in weights]
        elif config.scope == "global":
            masks = _block_mask(pattern, weights, config.ratio)
        else:
            masks = [_block_mask(pattern, [weight], config.ratio)[0] for weight in weights]
        how = str(pattern)
        if isinstance(pattern, Blocks):
            how += f" to ratio {config.ratio}" + (
                " over all weights" if config.scope == "global" else ""
            )
        for weight, keep in zip(weights, masks, strict=True):
            _apply(weight, keep, pattern, how, log)

    def _blocker(
        self, value: oir.Value, readers: Sequence[oir.Node], pattern: Pattern
    ) -> str | None:
        """Why the weight `value`, read by `readers`, is left dense; None when it is pruned."""
        what = _describe(value, readers)
        for reader in readers:
            for item in (node_id(reader), reader.op_type):
                if item in self.config.exclude:
                    return (
                        f"{what} not pruned: {describe_node(reader)} is excluded (exclude={item})"
                    )
            if not self.config.in_scope(reader):
                return f"{what} not pruned: {describe_node(reader)} is outside the layer scope"
        if not value.is_initializer() or constant_array(value) is None:
            return f"{what} not pruned: it {non_constant_reason(value)}"
        if value.is_graph_output():
            return f"{what} not pruned: it is a graph output"
        for use in value.uses():
            if use.node not in readers or use.idx != _WEIGHT_INPUT:
                return f"{what} not pruned: it is also read by {describe_node(use.node)}"
        if value.dtype is None or not value.dtype.is_floating_point():
            return f"{what} not pruned: its type {value.dtype} is not floating point"
        rank = len(value.const_value.shape)
        if rank < 2:
            return f"{what} not pruned: it is {rank}-D, with no output channel axis"
        if len({_view_axes(reader, rank) for reader in readers}) > 1:
            return f"{what} not pruned: its readers disagree on which axis is the reduction axis"
        shape = value.const_value.shape
        axes = _view_axes(readers[0], rank)
        reason = pattern.blocker(shape[axes[-2]], shape[axes[-1]])
        return None if reason is None else f"{what} not pruned: {reason}"


def _weight_readers(model: oir.Model) -> dict[oir.Value, tuple[oir.Node, ...]]:
    """Each value read as Conv W or MatMul/Gemm B, with its readers in graph order."""
    readers: dict[oir.Value, list[oir.Node]] = {}
    for node in model.graph.all_nodes():
        if node.op_type in PRUNABLE_OPS and node.domain == "" and len(node.inputs) > 1:
            weight = node.inputs[_WEIGHT_INPUT]
            if weight is not None:
                readers.setdefault(weight, []).append(node)
    return {value: tuple(nodes) for value, nodes in readers.items()}


def _describe(value: oir.Value, readers: Sequence[oir.Node]) -> str:
    role = "W" if readers[0].op_type == "Conv" else "B"
    return f"{readers[0].op_type} input {role} '{value.name}'"


def _view_axes(reader: oir.Node, rank: int) -> tuple[int, ...]:
    """The transpose that shows `reader`'s weight as [..., output channels, reduction]: Conv W
    is [Cout, Cin/group, *kernel], MatMul B [..., K, N], Gemm B [K, N] or with transB [N, K]."""
    if reader.op_type == "Conv":
        return (*range(2, rank), 0, 1)
    if reader.op_type == "Gemm" and reader.attributes.get_int("transB", 0):
        return (0, 1)
    return (*range(rank - 2), rank - 1, rank - 2)


def _prune_count(ratio: float, total: int) -> int:
    """How many of `total` weights or blocks a ratio prunes: the nearest count, halves up."""
    return math.floor(ratio * total + 0.5)


def _keep_all_but_smallest(scores: np.ndarray, count: int) -> np.ndarray:
    """A mask of `scores` (1-D) that drops the `count` smallest; of equal scores at the
    threshold the later ones go first."""
    keep = np.ones(scores.shape, dtype=bool)
    if count == 0:
        return keep
    threshold = np.partition(scores, count - 1)[count - 1]
    below = scores < threshold
    keep[below] = False
    ties = np.flatnonzero(scores == threshold)
    keep[ties[len(ties) - (count - int(below.sum())) :]] = False
    return keep


def _block_mask(pattern: Blocks, weights: Sequence[_Weight], ratio: float) -> list[np.ndarray]:
    """Keep masks ([kernel positions, output channels, reduction]) of `weights` pruned together
    to `ratio` of their blocks: one threshold over all of them."""
    if not weights:
        return []
    scores = [pattern.scores(weight.magnitude()) for weight in weights]
    flat = np.concatenate([score.ravel() for score in scores])
    keep = _keep_all_but_smallest(flat, _prune_count(ratio, flat.size))
    bounds = np.cumsum([score.size for score in scores])[:-1]
    return [
        pattern.expand(part.reshape(score.shape))
        for part, score in zip(np.split(keep, bounds), scores, strict=True)
    ]


def _apply(weight: _Weight, keep: np.ndarray, pattern: Pattern, how: str, log: PassLog) -> None:
    """Write the zeros and the annotation, and record them (or that nothing changed); `how`
    says how the weight was pruned ("4x4 to ratio 0.5")."""
    canonical = weight.canonical(weight.array).copy()
    canonical[~keep] = 0
    pruned = weight.from_canonical(canonical)
    nonzero = canonical != 0
    zeros, size = int((~nonzero).sum()), nonzero.size
    axes = weight.axes
    annotation = json.dumps(
        {
            "pattern": str(pattern),
            "output_axis": axes[-2],
            "reduction_axis": axes[-1],
            "sparsity": zeros / size,
        },
        sort_keys=True,
    )
    what = weight.describe()
    summary = f"{zeros}/{size} zeros (sparsity {zeros / size:.4g}); {pattern.layout(nonzero, keep)}"
    value = weight.value
    if (
        np.array_equal(pruned, weight.array)
        and value.metadata_props.get(SPARSITY_KEY) == annotation
    ):
        log.skip(
            weight.readers, rule=pattern.rule, reason=f"{what} already pruned {how}: {summary}"
        )
        return
    old = value.const_value
    tensor = oir.Tensor(pruned, dtype=old.dtype, name=old.name)
    tensor.metadata_props.update(old.metadata_props)
    value.const_value = tensor
    value.metadata_props[SPARSITY_KEY] = annotation
    shape = list(weight.array.shape)
    log.changed(
        ChangeKind.WEIGHTS,
        weight.readers,
        rule=pattern.rule,
        reason=f"{what} {shape} pruned {how}: {summary}",
    )
