"""Whether any node of the cluster can run a job: Ray keeps a task whose resources no node has
pending forever, so the driver checks each job against the live nodes' resources itself, before
submitting and again whenever nodes leave, and reports the job instead of waiting on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

NodeResources = Mapping[str, float]


def placement_problem(needs: Mapping[str, float], nodes: Sequence[NodeResources]) -> str | None:
    """None if some node has every resource in `needs` in the amount needed; otherwise why not,
    in one line: the resources no node has at all, else the set no single node has together."""
    if any(_fits(needs, node) for node in nodes):
        return None
    absent = [name for name in needs if not any(needs[name] <= node.get(name, 0) for node in nodes)]
    if absent:
        return "no node can run it: needs " + " / ".join(absent)
    return "no node can run it: needs " + " + ".join(needs) + " on one node"


def _fits(needs: Mapping[str, float], node: NodeResources) -> bool:
    return all(amount <= node.get(name, 0) for name, amount in needs.items())
