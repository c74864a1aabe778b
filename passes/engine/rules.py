"""Rules as data: a pattern, a build, and the op the build needs the target to run.

    Rule("matmul-add-gemm", MATMUL_PLUS_BIAS, build=_gemm, requires=Emits("Gemm"))

The engine (passes/engine/engine.py) finds the sites of `pattern`, checks them, asks the pass's
target whether it may emit `requires`, and hands each site that passes to `build`, which checks
what only it knows (raising `NoMatch` with the reason) and returns the `Rewrite`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import onnx_ir as oir

from ir.capabilities import FusedOp
from passes.base import PassConfig
from passes.engine.match import Match
from passes.engine.patterns import Op


@dataclass(frozen=True)
class Emits:
    """An op a build emits, which `passes.target_capabilities.can_emit` must allow for the
    pass's target at the model's opset."""

    op_type: str
    domain: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.domain}.{self.op_type}" if self.domain else self.op_type


@dataclass(frozen=True)
class RewriteContext:
    """What a build (and a procedural matcher) works with: the model and the graph of the site,
    that graph's default-domain opset (its function's, inside a function), the pass's config and
    target ("" for none), and what the rule's `requires` resolved to: the op granted and the
    target's declaration of it (None for a standard ONNX op, or when nothing is required)."""

    model: oir.Model
    graph: oir.Graph
    opset: int
    config: PassConfig
    target: str
    emits: Emits | None = None
    declaration: FusedOp | None = None


@dataclass(frozen=True)
class Rewrite:
    """What replaces a site: the new nodes in order, the old values whose readers move to new
    ones (graph outputs keep their names), and the reason the audit records.

    `removes` are nodes beyond the match that the rewrite also replaces (a head split only the
    site reads). `variant` is the name recorded instead of the rule's when the build chose one
    of several forms ("matmul-add-reshape-gemm"). `notes` are graph edits besides nodes, such as
    an added initializer, recorded as graph changes."""

    nodes: tuple[oir.Node, ...]
    outputs: Mapping[oir.Value, oir.Value]
    reason: str
    removes: tuple[oir.Node, ...] = ()
    variant: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Anchored:
    """A pattern written as code, for shapes the declarative language does not reach. The
    engine visits each `op_type` node of `domain`; `site` gives the nodes that make it a site,
    which skip records name (None: not a site, nothing recorded); `match` finds the whole
    pattern from them or raises `NoMatch` with the reason, worded as the whole skip reason."""

    op_type: str
    site: Callable[[oir.Node], tuple[oir.Node, ...] | None]
    match: Callable[[tuple[oir.Node, ...], RewriteContext], Match]
    domain: str = ""


@dataclass(frozen=True)
class Rule:
    """A rewrite as data. `pattern` is an `Op` tree (passes/engine/patterns.py) or `Anchored`;
    `build` turns a checked site into a `Rewrite` or raises `NoMatch`; `requires` is the op the
    build emits, or alternatives in order of preference (the first the target may emit is
    granted), or none when the build only re-emits what it matched."""

    name: str
    pattern: Op | Anchored
    build: Callable[[Match, RewriteContext], Rewrite]
    requires: Emits | tuple[Emits, ...] = ()

    @property
    def emit_choices(self) -> tuple[Emits, ...]:
        """`requires` as a tuple of alternatives, in order of preference."""
        return (self.requires,) if isinstance(self.requires, Emits) else self.requires
