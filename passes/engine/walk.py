"""Every graph of a model a rule may rewrite: the main graph, the bodies of If, Loop and Scan at
any depth, and model functions with their own subgraphs. A pattern inside a function body is the
same pattern; leaving it there would leave every call of the function unfused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx_ir as oir


@dataclass(frozen=True)
class Scope:
    """A graph, and the opset imports that cover its nodes: the model's for the main graph and
    its subgraphs (whose own imports ONNX does not read), its function's for a function body."""

    graph: oir.Graph
    imports: dict[str, int]
    function: oir.Function | None = None

    @property
    def opset(self) -> int:
        """The default-domain (ai.onnx) opset of the graph's nodes (1 when none is imported, as
        ONNX assumes)."""
        return self.imports.get("", self.imports.get("ai.onnx", 1))


def scopes(model: oir.Model) -> Iterator[Scope]:
    """Each graph of `model`: the main graph and its subgraphs, then each function's."""
    for graph in model.graphs():
        yield Scope(graph, model.opset_imports)
    for function in model.functions.values():
        for graph in (function.graph, *function.graph.subgraphs()):
            yield Scope(graph, function.opset_imports, function)
