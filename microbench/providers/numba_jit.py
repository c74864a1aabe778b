"""numba's jit for the provider kernels, with compiled code cached under the project's cache
folder (`ir.files.cache_root()/numba`), never beside the source.

By default numba's `cache=True` writes next to the source file: for a regular install that is
site-packages/microbench/providers/__pycache__. pip's uninstall does not remove those files, so
the folder outlives the package and, as a namespace package, shadows a later editable install
(`No module named 'microbench.providers.base'`). numba picks a function's cache folder when the
function is decorated, so the decorators here point numba at the project's cache for just that
moment: this holds whoever imported numba first, and other numba users' settings are untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numba
from numba.core import config

from ir.files import cache_root


def numba_cache_dir() -> Path:
    """Where the provider kernels' compiled code is kept."""
    return cache_root() / "numba"


def _usable(folder: Path) -> bool:
    """numba falls back to the source folder when it cannot write its cache folder; a kernel
    compiles on every run instead when the project's cache cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


@contextlib.contextmanager
def _numba_cache_dir_set_to(folder: Path) -> Iterator[None]:
    saved = config.CACHE_DIR
    config.CACHE_DIR = str(folder)
    try:
        yield
    finally:
        config.CACHE_DIR = saved


def _decorate(fn: Callable[..., Any], parallel: bool) -> Any:
    folder = numba_cache_dir().absolute()  # numba keeps the path; the cwd may change
    cache = _usable(folder)
    with _numba_cache_dir_set_to(folder):
        return numba.njit(fastmath=True, nogil=True, parallel=parallel, cache=cache)(fn)


def jit(fn: Callable[..., Any]) -> Any:
    """`numba.njit(fastmath=True, nogil=True)`, cached under `numba_cache_dir()`."""
    return _decorate(fn, parallel=False)


def parallel_jit(fn: Callable[..., Any]) -> Any:
    """`jit` with `parallel=True`, for kernels whose outer loop is a `numba.prange`."""
    return _decorate(fn, parallel=True)
