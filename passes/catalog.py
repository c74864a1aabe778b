"""Every pass the toolkit knows, found by reading the package: adding a pass is adding a file.

Passes live one per file in the stage folders below (`passes/cleanup/`, `passes/fusion/`, ...);
each module contributes the concrete `Pass` subclasses it defines. The infrastructure sits in
`passes/` itself.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from passes.base import Pass

_STAGE_PACKAGES = ("passes.cleanup", "passes.fusion", "passes.precision", "passes.sparsity")


def _discover() -> dict[str, type[Pass]]:
    found: dict[str, type[Pass]] = {}
    modules = []
    for package_name in _STAGE_PACKAGES:
        package = importlib.import_module(package_name)
        modules += [f"{package_name}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    for module_name in sorted(modules):
        module = importlib.import_module(module_name)
        for _, member in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(member, Pass)
                and member.__module__ == module.__name__
                and not inspect.isabstract(member)
            ):
                if member.name in found:
                    raise RuntimeError(f"two passes are named '{member.name}'")
                found[member.name] = member
    return found


PASSES: dict[str, type[Pass]] = _discover()
