"""A site a rule's pattern fits, as its build receives it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as oir

from passes.rewrite import constant_array


@dataclass(frozen=True)
class Match:
    """The nodes a site covers (replaced as a whole), the values the rest of the graph reads from
    it (their readers move to the rewrite's values), and what the pattern captured: nodes and
    values by name for a declarative pattern (None for an absent optional input), whatever a
    procedural matcher found for its build."""

    nodes: tuple[oir.Node, ...]
    outputs: tuple[oir.Value, ...]
    captures: Mapping[str, object] = field(default_factory=dict)

    @property
    def root(self) -> oir.Node:
        """The node whose output the site computes (a declarative pattern's root)."""
        producer = self.outputs[0].producer()
        assert producer is not None, "a site's output comes from one of its nodes"
        return producer

    def node(self, name: str) -> oir.Node:
        found = self.captures[name]
        assert isinstance(found, oir.Node), f"capture '{name}' is not a node"
        return found

    def value(self, name: str) -> oir.Value | None:
        found = self.captures[name]
        assert found is None or isinstance(found, oir.Value), f"capture '{name}' is not a value"
        return found

    def constant(self, name: str) -> np.ndarray:
        """The contents of a captured constant (a `Const` or `Scalar` the match has checked)."""
        array = constant_array(self.value(name))
        assert array is not None, f"capture '{name}' is not a constant"
        return array
