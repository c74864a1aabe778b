"""The compile step's audit record, in the same format as a pass's, so a report can show what
the target did to the IR (its own fusions, precision, time) next to what the passes did."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

from passes.audit import Change, ChangeKind, PassRecord


def artifact_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def op_count_changes(
    before: Mapping[str, int], after: Mapping[str, int], *, rule: str, who: str
) -> tuple[Change, ...]:
    """One change per op type whose count the target's own rewriting changed."""
    changes = []
    for op in sorted(set(before) | set(after)):
        old, new = before.get(op, 0), after.get(op, 0)
        if old != new:
            kind = ChangeKind.ADDED_NODE if new > old else ChangeKind.REMOVED_NODE
            changes.append(Change(kind, (), rule, f"{who}: {op} {old} -> {new}"))
    return tuple(changes)


def compile_record(
    *,
    target: str,
    config: Mapping[str, Any],
    ir_fingerprint: str,
    artifact_fingerprint: str,
    wall_ms: float,
    nodes: tuple[int, int],
    changes: tuple[Change, ...] = (),
    extra: Mapping[str, Any] | None = None,
) -> PassRecord:
    return PassRecord(
        seq=0,
        pass_name=f"compile:{target}",
        config=dict(config),
        in_fingerprint=ir_fingerprint,
        out_fingerprint=artifact_fingerprint,
        modified=bool(changes),
        wall_ms=wall_ms,
        changes=changes,
        skipped=(),
        node_count=nodes,
        extra=dict(extra or {}),
    )


def op_counts(op_types: list[str]) -> dict[str, int]:
    return dict(Counter(op_types))
