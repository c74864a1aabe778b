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
from typing import TYPE_CHECKING

from ir.errors import first_line

if TYPE_CHECKING:
    from targets.api import TargetInfo


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


def host_runtime_info(
    name: str,
    module: str,
    distributions: Sequence[str],
    preferred_batch_sizes: tuple[int, ...],
    install_hint: str = "",
) -> TargetInfo:
    """The info of a target whose runtime library runs on this machine's CPU: its version
    from the package metadata (`installed_version`), or unavailable with the import error and
    how to install the library (`install_hint`, "pip install ...")."""
    from targets.api import TargetInfo
    from targets.device import host_device

    try:
        version = installed_version(module, distributions)
    except Exception as error:  # not installed, or its native library fails to load
        why = f"cannot import {module}: {first_line(error)}"
        why += f" ({install_hint})" if install_hint else ""
        return TargetInfo(name, "?", host_device(), available=False, why_not=why, hardware="host")
    return TargetInfo(
        name,
        version,
        host_device(),
        available=True,
        hardware="host",
        preferred_batch_sizes=preferred_batch_sizes,
    )
