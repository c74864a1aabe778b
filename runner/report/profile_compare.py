"""Two profiles side by side, layer groups matched by the original node ids they stand for.

Two pipelines (FP32 and INT8) or two targets fuse differently, so their layers do not match
one to one: a fused Gemm on one side stands for the MatMul and the Add on the other. The ids of
the imported nodes (provenance) are what both sides share. Layers are grouped so that any two
sharing an original id, on either side, fall in one group; a group with layers on both sides is
compared, the rest is time only one side has (and layers no IR node accounts for).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from runner.report.profile_terminal import node_list
from runner.report.terminal import add_text_row, text_table
from runner.results.profile import ProfileLayer, ProfileResult


@dataclass(frozen=True)
class LayerGroup:
    """Layers of A and of B that share original node ids; a side may have none."""

    original_nodes: tuple[str, ...]
    a_layers: tuple[str, ...]
    b_layers: tuple[str, ...]
    a_ms: float
    b_ms: float
    op_types: str  # A's, or B's where A has none

    @property
    def change(self) -> str:
        if self.b_ms == self.a_ms:
            return "same"
        return "faster" if self.b_ms < self.a_ms else "slower"


@dataclass(frozen=True)
class ProfileComparison:
    a_name: str
    b_name: str
    matched: tuple[LayerGroup, ...]  # largest change first
    only_in_a: tuple[LayerGroup, ...]
    only_in_b: tuple[LayerGroup, ...]

    @property
    def unmatched_a_ms(self) -> float:
        return sum(group.a_ms for group in self.only_in_a)

    @property
    def unmatched_b_ms(self) -> float:
        return sum(group.b_ms for group in self.only_in_b)

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a_name,
            "b": self.b_name,
            "kind": "profile",
            "matched": [_group_json(group) for group in self.matched],
            "only_in_a": [_group_json(group) for group in self.only_in_a],
            "only_in_b": [_group_json(group) for group in self.only_in_b],
            "unmatched_a_ms": self.unmatched_a_ms,
            "unmatched_b_ms": self.unmatched_b_ms,
        }


def _group_json(group: LayerGroup) -> dict[str, Any]:
    return {**asdict(group), "change": group.change}


def compare_profiles(
    a: ProfileResult, b: ProfileResult, a_name: str, b_name: str
) -> ProfileComparison:
    sides = [(0, layer) for layer in a.layers] + [(1, layer) for layer in b.layers]
    parent: dict[str, str] = {}

    def root(ident: str) -> str:
        while parent.setdefault(ident, ident) != ident:
            ident = parent[ident]
        return ident

    for _, layer in sides:
        for ident in layer.original_nodes[1:]:
            parent[root(ident)] = root(layer.original_nodes[0])
    members: dict[str, list[tuple[int, ProfileLayer]]] = {}
    loose: list[tuple[int, ProfileLayer]] = []
    for side, layer in sides:
        if layer.original_nodes:
            members.setdefault(root(layer.original_nodes[0]), []).append((side, layer))
        else:
            loose.append((side, layer))
    groups = [_group(found) for found in members.values()] + [_group([item]) for item in loose]
    matched = [g for g in groups if g.a_layers and g.b_layers]
    return ProfileComparison(
        a_name=a_name,
        b_name=b_name,
        matched=tuple(sorted(matched, key=lambda g: -abs(g.b_ms - g.a_ms))),
        only_in_a=tuple(g for g in groups if not g.b_layers),
        only_in_b=tuple(g for g in groups if not g.a_layers),
    )


def _group(found: Sequence[tuple[int, ProfileLayer]]) -> LayerGroup:
    a = [layer for side, layer in found if side == 0]
    b = [layer for side, layer in found if side == 1]
    ids = dict.fromkeys(i for _, layer in found for i in layer.original_nodes)
    shown = a or b
    return LayerGroup(
        original_nodes=tuple(sorted(ids, key=_id_order)),
        a_layers=tuple(layer.name for layer in a),
        b_layers=tuple(layer.name for layer in b),
        a_ms=sum(layer.time_ms for layer in a),
        b_ms=sum(layer.time_ms for layer in b),
        op_types="+".join(dict.fromkeys(op for layer in shown for op in layer.op_types)) or "-",
    )


def _id_order(ident: str) -> tuple[int, str]:
    """n2 before n10."""
    digits = ident[1:]
    return (int(digits), ident) if ident[:1] == "n" and digits.isdigit() else (1 << 62, ident)


def profile_comparison_table(comparison: ProfileComparison) -> Table:
    grid = Table.grid()
    grid.add_column()
    grid.add_row(Text(f"A: {comparison.a_name}\nB: {comparison.b_name}", style="bold"))
    table = text_table(
        "B against A, layers matched by original node ids",
        ("original nodes", "op types (A)", "A layers", "B layers", "A ms", "B ms", "B/A", "change"),
    )
    for group in comparison.matched:
        ratio = f"{group.b_ms / group.a_ms:.3g}" if group.a_ms > 0 else "-"
        add_text_row(
            table,
            node_list(group.original_nodes),
            group.op_types,
            node_list(group.a_layers),
            node_list(group.b_layers),
            f"{group.a_ms:.3f}",
            f"{group.b_ms:.3f}",
            ratio,
            group.change,
        )
    grid.add_row(table)
    for side, groups, ms in (
        ("A", comparison.only_in_a, comparison.unmatched_a_ms),
        ("B", comparison.only_in_b, comparison.unmatched_b_ms),
    ):
        names = [name for group in groups for name in (group.a_layers or group.b_layers)]
        if names:
            grid.add_row(Text(f"only in {side}: {ms:.3f} ms in {node_list(names)}"))
    return grid
