"""What a pass is: a name, a frozen config, and a `run` that edits the model and says so.

A pass edits the onnx_ir model in place and reports each edit through its `PassLog`, which
also stamps new nodes with an id and provenance. The pass manager checks the promise: a pass
whose model fingerprint changed must have recorded a change, and one that recorded changes
must have changed the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ir.node_ids import NODE_ID_KEY, next_free_number, node_id, set_provenance
from passes.audit import Change, ChangeKind, Skip
from passes.option_range import check_ranges

if TYPE_CHECKING:  # annotations only: target plugins import PassConfig, and must load cheaply
    import onnx_ir as oir

    from passes.contracts import Property  # it reads graphs with helpers importing this module


@dataclass(frozen=True)
class PassConfig:
    """Options of a pass or target. Subclasses are frozen dataclasses whose fields all have
    defaults; numeric fields declare their range with `passes.option_range.bounded`, checked
    here when the config is built (a subclass's own `__post_init__` calls this one first)."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class PassResult:
    model: oir.Model
    modified: bool
    changes: tuple[Change, ...]
    skipped: tuple[Skip, ...]


class PassLog:
    """The pass's account of its work, and the one way it names and stamps new nodes."""

    def __init__(self, model: oir.Model, pass_name: str) -> None:
        self._pass_name = pass_name
        self._next_id = next_free_number(model)
        self.changes: list[Change] = []
        self.skipped: list[Skip] = []

    def added(
        self, node: oir.Node, *, rule: str, reason: str, replaces: Sequence[oir.Node] = ()
    ) -> oir.Node:
        """Give a new node its id and provenance, and record it."""
        node.metadata_props[NODE_ID_KEY] = f"n{self._next_id}"
        self._next_id += 1
        set_provenance(node, pass_name=self._pass_name, rule=rule, replaces=tuple(replaces))
        self.changes.append(
            Change(
                ChangeKind.ADDED_NODE,
                (node_id(node),),
                rule,
                reason,
                replaces=tuple(node_id(n) for n in replaces),
            )
        )
        return node

    def removed(self, nodes: Iterable[oir.Node], *, rule: str, reason: str) -> None:
        for node in nodes:
            self.changes.append(Change(ChangeKind.REMOVED_NODE, (node_id(node),), rule, reason))

    def changed(
        self, kind: ChangeKind, nodes: Iterable[oir.Node], *, rule: str, reason: str
    ) -> None:
        """An edit that keeps the nodes: rewired inputs, attributes, dtypes, weight values."""
        self.changes.append(Change(kind, tuple(node_id(n) for n in nodes), rule, reason))

    def changed_graph(self, *, rule: str, reason: str) -> None:
        """An edit of the graph's own inputs, outputs or initializers (no node involved)."""
        self.changes.append(Change(ChangeKind.GRAPH_IO, (), rule, reason))

    def skip(self, nodes: Iterable[oir.Node], *, rule: str, reason: str) -> None:
        self.skipped.append(Skip(rule, tuple(node_id(n) for n in nodes), reason))


class Pass(ABC):
    """An explicit, named optimization; subclasses set `name`, `summary` and `config_type`,
    and their contract: the properties (`passes.contracts`) the pass `requires` of the model it
    gets, `provides` to the passes after it, and `invalidates` for them. The manager checks a
    pipeline against the contracts before running any pass."""

    name: ClassVar[str]
    summary: ClassVar[str]
    config_type: ClassVar[type[PassConfig]] = PassConfig
    requires: ClassVar[tuple[Property, ...]] = ()
    provides: ClassVar[tuple[Property, ...]] = ()
    invalidates: ClassVar[tuple[Property, ...]] = ()

    def __init__(self, config: PassConfig | None = None) -> None:
        self.config = config if config is not None else self.config_type()

    def __call__(self, model: oir.Model) -> PassResult:
        log = PassLog(model, self.name)
        self.run(model, log)
        return PassResult(model, bool(log.changes), tuple(log.changes), tuple(log.skipped))

    @abstractmethod
    def run(self, model: oir.Model, log: PassLog) -> None:
        """Edit `model` in place, recording every change and every considered-but-skipped site."""
