"""The engine: apply a rule set to every graph of a model, repeating until nothing changes.

At each node of each graph (passes/engine/walk.py), each rule in order looks for sites: the
ways its pattern's structure fits there. A site is then checked: its pattern's predicates,
that no value it computes is read outside it, that the pass's target may emit what the rule
requires, and the build's own checks. The first site that passes is rewritten and the node is
done; when none does, each site's reason becomes a skip record. Rewrites can make new sites
(a fused node feeding another pattern), so the walk repeats until a round rewrites nothing; the
skips of that last round are the ones recorded, as they describe the graph the pass leaves.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import onnx_ir as oir

from passes.base import PassConfig, PassLog
from passes.engine.match import Match
from passes.engine.matcher import bindings, match_binding
from passes.engine.patterns import Op
from passes.engine.rules import Anchored, Rewrite, RewriteContext, Rule
from passes.engine.walk import Scope, scopes
from passes.rewrite import NoMatch, leaked_value_reason, replace_nodes
from passes.target_capabilities import can_emit

# Rounds after which a rule set that still rewrites is taken to loop (a rule matching its own
# output); one round rewrites whole chains, and the next finds nothing.
MAX_ROUNDS = 10
# The version a rewrite imports a new op domain at (contrib domains such as com.microsoft have
# only version 1).
NEW_DOMAIN_VERSION = 1


@dataclass(frozen=True)
class _Site:
    """A place one rule's pattern fits at a node: the nodes a skip record names, the words its
    skip reason starts with, and how to find the whole match or why not."""

    nodes: tuple[oir.Node, ...]
    label: str
    find: Callable[[RewriteContext], Match]


@dataclass(frozen=True)
class _Skip:
    """A skip record held back until the round is known to be the last."""

    rule: str
    nodes: tuple[oir.Node, ...]
    reason: str


def target_of(config: PassConfig) -> str:
    """The target a pass emits for: its `target` option, "" (none) for a pass without one."""
    return getattr(config, "target", "")


def apply_rules(
    model: oir.Model, rules: Sequence[Rule], config: PassConfig, log: PassLog, name: str
) -> None:
    """Rewrite every site of `rules` in `model` to a fixed point, recording each change and,
    from the last round, each site left alone. `name` is the pass's, for the error when the
    rules never stop rewriting."""
    for _ in range(MAX_ROUNDS):
        skips: list[_Skip] = []
        rewrote = False
        for scope in scopes(model):
            context = functools.cache(functools.partial(_context, model, scope, config))
            for node in list(scope.graph):
                if node.graph is scope.graph:  # not removed by an earlier rewrite this round
                    rewrote |= _rewrite_at(node, rules, context, scope, model, log, skips)
        if not rewrote:
            for skip in skips:
                log.skip(_in_graph_order(skip.nodes), rule=skip.rule, reason=skip.reason)
            return
    raise RuntimeError(f"pass '{name}' still rewrites after {MAX_ROUNDS} rounds")


def _in_graph_order(nodes: tuple[oir.Node, ...]) -> tuple[oir.Node, ...]:
    """A site's nodes as the graph lists them (a pattern names them root first), as change
    records list replaced nodes; a skip is recorded from a round that changed nothing, so every
    node is still in its graph."""
    graph = nodes[0].graph
    if graph is None or any(node.graph is not graph for node in nodes):
        return nodes
    position = {node: index for index, node in enumerate(graph)}  # graph.index walks per call
    return tuple(sorted(nodes, key=position.__getitem__))


def _context(
    model: oir.Model, scope: Scope, config: PassConfig, rule: Rule
) -> tuple[RewriteContext, str | None]:
    """The context of `rule`'s builds in `scope`, and why the target may not emit what the rule
    requires (None when it may: the first choice allowed is granted)."""
    target = target_of(config)
    context = RewriteContext(model, scope.graph, scope.opset, config, target)
    refusals = []
    for choice in rule.emit_choices:
        emittable = can_emit(target, choice.op_type, choice.domain, scope.opset)
        if emittable.allowed:
            return dataclasses.replace(
                context, emits=choice, declaration=emittable.declaration
            ), None
        refusals.append(emittable.why_not)
    return context, "; ".join(refusals) or None


def _rewrite_at(
    node: oir.Node,
    rules: Sequence[Rule],
    context: Callable[[Rule], tuple[RewriteContext, str | None]],
    scope: Scope,
    model: oir.Model,
    log: PassLog,
    skips: list[_Skip],
) -> bool:
    """Rewrite the first site at `node` that passes every check; add the reasons of the sites
    seen to `skips` when none does (one per set of nodes: the first input order's)."""
    failed: dict[tuple[str, frozenset[oir.Node]], _Skip] = {}
    for rule in rules:
        rule_context, refusal = context(rule)
        for site in _sites(rule.pattern, node):
            try:
                match = site.find(rule_context)
                leak = leaked_value_reason(match.nodes, match.outputs)
                if leak is not None or refusal is not None:
                    raise NoMatch(leak or refusal)
                rewrite = rule.build(match, rule_context)
            except NoMatch as why:  # sites over the same nodes (inputs swapped) are one
                skip = _Skip(rule.name, site.nodes, f"{site.label}{why}")
                failed.setdefault((rule.name, frozenset(site.nodes)), skip)
                continue
            _apply(rule, match, rewrite, scope, model, log)
            return True
    skips.extend(failed.values())
    return False


def _sites(pattern: Op | Anchored, node: oir.Node) -> Iterator[_Site]:
    """The sites of `pattern` at `node`: one per way a declarative pattern's structure fits
    (its reasons start "MatMul+Add not fused: "), or the procedural pattern's own."""
    if isinstance(pattern, Anchored):
        domain = "" if node.domain == "ai.onnx" else node.domain
        if (node.op_type, domain) != (pattern.op_type, pattern.domain):
            return
        site = pattern.site(node)
        if site is not None:
            yield _Site(site, "", functools.partial(pattern.match, site))
        return
    for binding in bindings(pattern, node):
        label = "+".join(matched.op_type for matched in binding.nodes) + " not fused: "
        yield _Site(binding.nodes, label, lambda _context, found=binding: match_binding(found))


def _apply(
    rule: Rule, match: Match, rewrite: Rewrite, scope: Scope, model: oir.Model, log: PassLog
) -> None:
    name = rewrite.variant or rule.name
    for domain in sorted({node.domain for node in rewrite.nodes} - {"", "ai.onnx"}):
        _import_domain(domain, scope, model, log, name)
    for note in rewrite.notes:
        log.changed_graph(rule=name, reason=note)
    replace_nodes(
        log,
        [*match.nodes, *rewrite.removes],
        rewrite.nodes,
        rewrite.outputs,
        rule=name,
        reason=rewrite.reason,
    )


def _import_domain(domain: str, scope: Scope, model: oir.Model, log: PassLog, rule: str) -> None:
    """Import `domain` where the new node's graph needs it: the model, and its function."""
    places = [(model.opset_imports, "")]
    if scope.function is not None:
        places.append((scope.function.opset_imports, f" into function '{scope.function.name}'"))
    for imports, where in places:
        if domain not in imports:
            imports[domain] = NEW_DOMAIN_VERSION
            log.changed_graph(
                rule=rule, reason=f"imported opset {domain} {NEW_DOMAIN_VERSION}{where}"
            )
