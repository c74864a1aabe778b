"""The version of a target's runtime library, read without importing it where possible.

`runner targets list` asks every registered target for its version; importing TVM takes a
second and onnxruntime loads numpy, so a target reads its library's package metadata instead
and imports the library only when it compiles or runs a model.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Sequence


def installed_version(module: str, distributions: Sequence[str]) -> str:
    """The version of `module` from the metadata of the first installed of `distributions`
    (the packages that install it: `onnxruntime`, `onnxruntime-gpu`, ...). Installed any other
    way (a source build on PYTHONPATH, a package not listed), it is imported for its
    `__version__`, as only the module itself knows it then.

    `module` is a top-level name. Raises ModuleNotFoundError when it is not installed, and
    whatever a fallback import raises (a broken native library)."""
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return str(getattr(importlib.import_module(module), "__version__", "unknown"))
