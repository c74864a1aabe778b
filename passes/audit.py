"""The audit records a pipeline leaves: what each pass changed, skipped, cost and did to numerics.

One `PassRecord` per pass, written as JSON Lines (`write_audit`), read back by
`runner passes explain` (`read_audit`). Every later figure in a report names the fingerprint of
the IR it ran, and the record with that `out_fingerprint` says how the IR got there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ir.errors import AsicperfError
from ir.files import write_text_atomically

AUDIT_SCHEMA = "asicperf.pass-audit/1"
# The record field the numeric check (an instrument) fills; null in every other record.
NUMERIC_FIELD = "numeric"


class ChangeKind(StrEnum):
    ADDED_NODE = "added-node"
    REMOVED_NODE = "removed-node"
    REWIRED = "rewired"
    ATTRIBUTE = "attribute"
    DTYPE = "dtype"
    WEIGHTS = "weights"
    GRAPH_IO = "graph-io"


@dataclass(frozen=True)
class Change:
    """One edit: its kind, the stable ids involved, the rule that fired and why.

    `replaces` (for added nodes) lists the ids the new node stands for, so `explain --node`
    can walk a fused node back to the nodes of the original file.
    """

    kind: ChangeKind
    nodes: tuple[str, ...]
    rule: str
    reason: str
    replaces: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "kind": str(self.kind),
            "nodes": list(self.nodes),
            "rule": self.rule,
            "reason": self.reason,
        }
        if self.replaces:
            record["replaces"] = list(self.replaces)
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Change:
        return cls(
            kind=ChangeKind(record["kind"]),
            nodes=tuple(record["nodes"]),
            rule=record["rule"],
            reason=record["reason"],
            replaces=tuple(record.get("replaces", ())),
        )


@dataclass(frozen=True)
class Skip:
    """A place a rule looked at and left alone, with the reason."""

    rule: str
    nodes: tuple[str, ...]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "nodes": list(self.nodes), "reason": self.reason}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Skip:
        return cls(rule=record["rule"], nodes=tuple(record["nodes"]), reason=record["reason"])


@dataclass(frozen=True)
class SkippedBy:
    """An instrument stopped the pass from running (`--disable-pass`, to bisect a bad one)."""

    instrument: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"instrument": self.instrument, "reason": self.reason}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> SkippedBy:
        return cls(instrument=record["instrument"], reason=record["reason"])


@dataclass(frozen=True)
class RepeatRound:
    """Where a pass ran inside a `repeat(...)` group: the group (its text, and the seq of its
    first pass run, which tells two equal groups apart), which round of how many, and whether
    the group stopped at its fixed point (a round in which no pass changed the model) or at its
    cap of `max_rounds`."""

    group: str
    first_seq: int
    round: int
    rounds: int
    max_rounds: int
    fixed_point: bool

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> RepeatRound:
        return cls(**{field.name: record[field.name] for field in dataclasses.fields(cls)})

    def outcome(self) -> str:
        """`fixed point after 3 rounds` or `stopped at the cap of 4 rounds`."""
        if self.fixed_point:
            return f"fixed point after {self.rounds} round{'s' if self.rounds > 1 else ''}"
        return f"stopped at the cap of {self.max_rounds} rounds, the last still changing the model"


@dataclass(frozen=True)
class PassRecord:
    """Everything one pass did, as one line of the audit log.

    The pipeline's first record also lists `input_nodes`, the stable ids of the model the
    pipeline started from, so `explain --node` can tell a node of that model from an id the
    audit never saw. `extra` holds the fields instruments returned (`numeric`, the numeric
    check's drift) and any a caller adds; `skipped_by` and `repeat` are set only for a pass an
    instrument kept from running and a pass inside a `repeat(...)` group.
    """

    seq: int
    pass_name: str
    config: Mapping[str, Any]
    in_fingerprint: str
    out_fingerprint: str
    modified: bool
    wall_ms: float
    changes: tuple[Change, ...]
    skipped: tuple[Skip, ...]
    node_count: tuple[int, int] = (0, 0)
    extra: Mapping[str, Any] = field(default_factory=dict)
    input_nodes: tuple[str, ...] = ()
    skipped_by: SkippedBy | None = None
    repeat: RepeatRound | None = None

    @property
    def numeric(self) -> Mapping[str, Any] | None:
        """The numeric check's drift (`passes.instruments.NumericCheck`): None when the pass
        changed nothing or no check ran."""
        return self.extra.get(NUMERIC_FIELD)

    def rule_counts(self) -> dict[str, int]:
        """How often each rule fired. A rewrite that added nodes fired once per distinct set of
        replaced nodes; a rule that only removed nodes (dce, folding) fired once per removal; any
        other rule once per change."""
        fused: dict[str, set[tuple[str, ...]]] = {}
        removed: dict[str, int] = {}
        other: dict[str, int] = {}
        for change in self.changes:
            if change.kind == ChangeKind.ADDED_NODE:
                fused.setdefault(change.rule, set()).add(change.replaces or change.nodes)
            elif change.kind == ChangeKind.REMOVED_NODE:
                removed[change.rule] = removed.get(change.rule, 0) + 1
            else:
                other[change.rule] = other.get(change.rule, 0) + 1
        counts = {rule: len(sites) for rule, sites in fused.items()}
        for tally in (removed, other):
            counts.update({rule: n for rule, n in tally.items() if rule not in counts})
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": AUDIT_SCHEMA,
            "seq": self.seq,
            "pass": self.pass_name,
            "config": dict(self.config),
            "in_fingerprint": self.in_fingerprint,
            "out_fingerprint": self.out_fingerprint,
            "modified": self.modified,
            "wall_ms": round(self.wall_ms, 3),
            "nodes_before": self.node_count[0],
            "nodes_after": self.node_count[1],
            "rule_counts": self.rule_counts(),
            "changes": [change.to_json() for change in self.changes],
            "skipped": [skip.to_json() for skip in self.skipped],
            NUMERIC_FIELD: None,  # every record has the key; the numeric check fills it
            **({"input_nodes": list(self.input_nodes)} if self.input_nodes else {}),
            **({"skipped_by": self.skipped_by.to_json()} if self.skipped_by else {}),
            **({"repeat": self.repeat.to_json()} if self.repeat else {}),
            **dict(self.extra),
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> PassRecord:
        known = {
            "schema",
            "seq",
            "pass",
            "config",
            "in_fingerprint",
            "out_fingerprint",
            "modified",
            "wall_ms",
            "nodes_before",
            "nodes_after",
            "rule_counts",
            "changes",
            "skipped",
            "input_nodes",
            "skipped_by",
            "repeat",
        }
        skipped_by, repeat = record.get("skipped_by"), record.get("repeat")
        return cls(
            seq=record["seq"],
            pass_name=record["pass"],
            config=record["config"],
            in_fingerprint=record["in_fingerprint"],
            out_fingerprint=record["out_fingerprint"],
            modified=record["modified"],
            wall_ms=record["wall_ms"],
            changes=tuple(Change.from_json(c) for c in record["changes"]),
            skipped=tuple(Skip.from_json(s) for s in record["skipped"]),
            node_count=(record.get("nodes_before", 0), record.get("nodes_after", 0)),
            extra={k: v for k, v in record.items() if k not in known},
            input_nodes=tuple(record.get("input_nodes", ())),
            skipped_by=SkippedBy.from_json(skipped_by) if skipped_by else None,
            repeat=RepeatRound.from_json(repeat) if repeat else None,
        )


def repeat_groups(records: Sequence[PassRecord]) -> list[RepeatRound]:
    """One entry per `repeat(...)` group the records ran, in order: how many rounds it ran and
    how it ended."""
    groups = {record.repeat.first_seq: record.repeat for record in records if record.repeat}
    return list(groups.values())


def config_to_json(config: object) -> dict[str, Any]:
    """A pass config (frozen dataclass) as plain JSON values; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))  # type: ignore[call-overload]


def audit_summary(records: Sequence[PassRecord]) -> dict[str, Any]:
    """A pipeline's audit as a result document carries it: a fingerprint of the whole audit
    (equal for two runs that did the same thing: wall times are left out) and, per pass, its
    counts and numeric drift without the change lists."""
    full = [record.to_json() for record in records]
    timeless = [{k: v for k, v in record.items() if k != "wall_ms"} for record in full]
    digest = hashlib.sha256(json.dumps(timeless, sort_keys=True, default=str).encode()).hexdigest()
    return {
        "fingerprint": f"sha256:{digest}",
        "passes": [
            {
                k: v
                for k, v in record.items()
                if k not in ("schema", "changes", "skipped", "input_nodes")
            }
            for record in full
        ],
    }


def write_audit(path: str | os.PathLike[str], records: Iterable[PassRecord]) -> Path:
    """Write the audit log as JSON Lines, atomically."""
    path = Path(path)
    lines = [json.dumps(record.to_json(), sort_keys=True) for record in records]
    write_text_atomically(path, "".join(line + "\n" for line in lines))
    return path


def read_audit(path: str | os.PathLike[str]) -> list[PassRecord]:
    """Read an audit log; a missing, empty or malformed file is a one-line AsicperfError (a
    pipeline always runs at least one pass, so an audit without records is not one)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise AsicperfError(f"{path}: cannot read audit log: {error.strerror or error}") from error
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record.get("schema") != AUDIT_SCHEMA:
                raise ValueError(f"schema is {record.get('schema')!r}, expected {AUDIT_SCHEMA}")
            records.append(PassRecord.from_json(record))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise AsicperfError(f"{path}:{number}: not an audit record: {error}") from error
    if not records:
        raise AsicperfError(f"{path}: empty audit log (no pass records)")
    return records


def trace_origin(records: Sequence[PassRecord], node: str) -> list[tuple[PassRecord, Change]]:
    """The chain of additions that produced `node`, newest first, down to original nodes."""
    added_by: dict[str, tuple[PassRecord, Change]] = {}
    for record in records:
        for change in record.changes:
            if change.kind == ChangeKind.ADDED_NODE:
                for added in change.nodes:
                    added_by[added] = (record, change)
    chain: list[tuple[PassRecord, Change]] = []
    pending, seen = [node], set()
    while pending:
        current = pending.pop(0)
        if current in seen or current not in added_by:
            continue
        seen.add(current)
        step = added_by[current]
        chain.append(step)
        pending.extend(step[1].replaces)
    return chain


def audited_node_ids(records: Sequence[PassRecord]) -> set[str]:
    """Every node id the audit knows: the pipeline's input nodes, and every id a change or a
    skip names (enough on its own for audits written before `input_nodes` was recorded)."""
    known = {node for record in records for node in record.input_nodes}
    for record in records:
        for change in record.changes:
            known.update(change.nodes, change.replaces)
        for skip in record.skipped:
            known.update(skip.nodes)
    return known
