"""Before/expected tests for rewrite passes: the graph before and the graph expected after, both
as ONNX text (`onnx.parser.parse_model` syntax), compared by structure.

The canonical form keeps what a rewrite is responsible for and drops what it may choose freely:
op types, domains, attributes, how nodes are wired (by position: graph input 0, node 2's
output, constant 1), graph input and output names and types, opset imports, functions and
subgraphs; not node names, ids or the names of intermediate values. Constants (initializers and
Constant tensors) are numbered in order of first use and compared by dtype, shape and value
within a tolerance; an initializer nothing reads is left out (dce removes it). Nodes are
compared in graph order, so an expected text lists them in the order the pass leaves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as oir
from onnx_text import load_onnx_text

from passes.audit import Skip
from passes.base import Pass, PassResult


@dataclass(frozen=True)
class Canonical:
    """A model's structure as text lines (a failed comparison shows their diff) and the
    contents of its constants, in the order the text numbers them (c0, c1, ...)."""

    text: str
    constants: tuple[np.ndarray, ...]


class _Printer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: list[np.ndarray] = []
        self._refs: dict[oir.Value, str] = {}

    def constant(self, array: np.ndarray) -> str:
        self.constants.append(array)
        return f"c{len(self.constants) - 1}<{array.dtype}{list(array.shape)}>"

    def ref(self, value: oir.Value | None) -> str:
        if value is None:
            return "_"
        if value not in self._refs:
            tensor = value.const_value
            assert value.is_initializer() and tensor is not None, f"'{value.name}' is undefined"
            self._refs[value] = self.constant(tensor.numpy())
        return self._refs[value]

    def graph(self, graph: oir.Graph, indent: str, title: str, prefix: str = "") -> None:
        """Print `graph` as a block; its values get refs (`prefix` + in0, n1, ...) that its
        subgraphs may read."""
        self.lines.append(f"{indent}{title} {{")
        for index, value in enumerate(graph.inputs):
            self._refs[value] = f"{prefix}in{index}"
            self.lines.append(f"{indent}  in{index} {_typed(value)}")
        for number, node in enumerate(graph):
            name = f"{prefix}n{number}"
            for index, value in enumerate(node.outputs):
                self._refs[value] = name + (f".{index}" if index else "")
            self._node(node, name, indent + "  ")
        for value in graph.outputs:
            self.lines.append(f"{indent}  out {_typed(value)} = {self.ref(value)}")
        self.lines.append(f"{indent}}}")

    def _node(self, node: oir.Node, name: str, indent: str) -> None:
        domain = "" if node.domain == "ai.onnx" else node.domain
        op = f"{domain}::{node.op_type}" if domain else node.op_type
        inputs = ", ".join(self.ref(value) for value in node.inputs)
        line, subgraphs = f"{indent}{name} = {op}({inputs})", []
        for key in sorted(node.attributes):
            attr = node.attributes[key]
            if attr.type == oir.AttributeType.GRAPH:
                subgraphs.append((key, attr.as_graph()))
            line += f" {key}={self._attribute(attr)}"
        self.lines.append(line)
        for key, graph in subgraphs:
            self.graph(graph, indent + "  ", key, f"{name}.{key}/")

    def _attribute(self, attr: oir.Attr) -> str:
        kind = attr.type
        if kind == oir.AttributeType.TENSOR:
            return self.constant(attr.as_tensor().numpy())
        if kind == oir.AttributeType.GRAPH:
            return "<graph>"
        if kind == oir.AttributeType.FLOAT:
            return f"{attr.value:.6g}"
        if kind == oir.AttributeType.FLOATS:
            return "[" + ",".join(f"{number:.6g}" for number in attr.value) + "]"
        return repr(list(attr.value) if isinstance(attr.value, tuple) else attr.value)


def _typed(value: oir.Value) -> str:
    """A graph input or output: its name, and its type where the graph declares one."""
    return f"{value.name} {value.dtype or '?'}{value.shape or ''}"


def _imports(opsets: dict[str, int]) -> str:
    normal = {
        ("" if domain == "ai.onnx" else domain): version for domain, version in opsets.items()
    }
    return " ".join(f"{domain or 'ai.onnx'}={normal[domain]}" for domain in sorted(normal))


def canonical(model: oir.Model) -> Canonical:
    printer = _Printer()
    printer.lines.append(f"opsets {_imports(model.opset_imports)}")
    printer.graph(model.graph, "", "graph")
    for key in sorted(model.functions):
        function = model.functions[key]
        printer.lines.append(f"opsets {_imports(function.opset_imports)}")
        title = f"function {function.domain}.{function.name}"
        printer.graph(function.graph, "", title, f"{function.name}/")
    return Canonical("\n".join(printer.lines), tuple(printer.constants))


def assert_same_graph(
    got: oir.Model, expected: oir.Model, *, rtol: float = 1e-5, atol: float = 1e-6
) -> None:
    """Fail unless `got` and `expected` have the same canonical form (constants within
    `rtol`/`atol`)."""
    found, wanted = canonical(got), canonical(expected)
    assert found.text == wanted.text
    for index, (array, expected_array) in enumerate(
        zip(found.constants, wanted.constants, strict=True)
    ):
        np.testing.assert_allclose(array, expected_array, rtol, atol, err_msg=f"constant c{index}")


def load_text(folder: Path, text: str) -> oir.Model:
    """The model of ONNX text `text`, loaded the way the toolkit loads a file (node ids, shape
    inference), through a file of its own under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return load_onnx_text(folder, text)


def check_rewrite(tmp_path: Path, rewrite: Pass, before: str, expected: str) -> PassResult:
    """Run `rewrite` on `before`, assert the result is `expected`, and return the result."""
    model = load_text(tmp_path / "before", before)
    result = rewrite(model)
    assert result.modified
    assert_same_graph(model, load_text(tmp_path / "expected", expected))
    return result


def check_skip(tmp_path: Path, rewrite: Pass, before: str) -> tuple[Skip, ...]:
    """Run `rewrite` on `before`, assert it leaves the graph as it was, and return its skips."""
    model = load_text(tmp_path / "before", before)
    result = rewrite(model)
    assert not result.modified
    assert_same_graph(model, load_text(tmp_path / "unchanged", before))
    return result.skipped
