"""The packages import downward only (docs/architecture.md):

    ir  <-  passes  <-  targets  <-  zoo, microbench  <-  runner

Every import statement counts, at module level or inside a function: a lazy import is still a
dependency, and an upward one is how the old zoo <-> passes circle began. The one exception is
explicit: `passes/target_capabilities.py` resolves a pass's `target` option through the target
registry, inside its functions."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"ir": 0, "passes": 1, "targets": 2, "zoo": 3, "microbench": 3, "runner": 4}
# (file, module) pairs allowed to reach up, and only from inside a function.
LAZY_EXCEPTIONS = frozenset({("passes/target_capabilities.py", "targets.registry")})


def _imports(tree: ast.Module) -> Iterator[tuple[ast.stmt, str, bool]]:
    """(statement, imported module, inside a function) for every absolute import."""
    scopes: list[tuple[ast.AST, bool]] = [(tree, False)]
    while scopes:
        node, in_function = scopes.pop()
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                yield from ((child, alias.name, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child, child.module, inside
            scopes.append((child, inside))


def upward_imports(root: Path) -> list[str]:
    """`file:line imports module` for each import of a package in a higher or sibling layer."""
    found = []
    for package, layer in LAYERS.items():
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for statement, module, in_function in _imports(ast.parse(path.read_text())):
                imported = module.split(".")[0]
                if imported == package or imported not in LAYERS:
                    continue
                if LAYERS[imported] < layer:
                    continue
                if in_function and (relative, module) in LAZY_EXCEPTIONS:
                    continue
                found.append(f"{relative}:{statement.lineno} imports {module}")
    return found


def test_no_package_imports_a_higher_or_sibling_layer() -> None:
    assert upward_imports(ROOT) == []


def test_the_scan_finds_upward_imports_at_any_depth(tmp_path: Path) -> None:
    for package in LAYERS:
        (tmp_path / package).mkdir()
    (tmp_path / "passes" / "lazy.py").write_text(
        "import ir.errors\n\n\ndef f():\n    if True:\n        from runner.cli import main\n"
    )
    (tmp_path / "zoo" / "sibling.py").write_text("import microbench.ops\nimport numpy\n")
    (tmp_path / "passes" / "target_capabilities.py").write_text(
        "from targets.registry import TARGETS\n\n\ndef f():\n    from targets.registry import X\n"
    )
    assert upward_imports(tmp_path) == [
        "passes/lazy.py:6 imports runner.cli",
        "passes/target_capabilities.py:1 imports targets.registry",
        "zoo/sibling.py:1 imports microbench.ops",
    ]
