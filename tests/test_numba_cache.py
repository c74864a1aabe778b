"""numba's on-disk cache of the provider kernels lives under the project's cache folder: files
written beside the source (site-packages/microbench/providers/__pycache__) outlive a
`pip install .` and shadow a later `pip install -e .`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import microbench
from microbench.providers import numba_provider
from microbench.providers.numba_jit import jit, numba_cache_dir

_PACKAGE = Path(microbench.__file__).parent


def _numba_files_in_package() -> dict[Path, int]:
    return {
        path: path.stat().st_mtime_ns
        for pattern in ("*.nbi", "*.nbc")
        for path in _PACKAGE.rglob(pattern)
    }


def _compile_provider_exp_row() -> np.ndarray:
    """Recompile the provider's `_exp_row` from its source in numba_provider.py, through the
    provider's `jit`, with the cache folder the environment names now."""
    exp_row = jit(numba_provider._exp_row.py_func)
    x = np.array([0.0, 1.0], np.float32)
    out, bits = np.empty_like(x), np.empty(2, np.int32)
    exp_row(x, out, bits)
    return out


def test_numba_cache_written_under_cache_root_not_package_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path / "cache"))
    before = _numba_files_in_package()

    out = _compile_provider_exp_row()

    np.testing.assert_allclose(out, [1.0, np.e], rtol=1e-6)
    assert numba_cache_dir() == tmp_path / "cache" / "numba"
    cached = sorted(p.name for p in numba_cache_dir().rglob("*") if p.is_file())
    assert any(n.startswith("numba_provider._exp_row-") and n.endswith(".nbi") for n in cached)
    assert any(n.startswith("numba_provider._exp_row-") and n.endswith(".nbc") for n in cached)
    assert _numba_files_in_package() == before


def test_numba_cache_root_unwritable_compiles_uncached_not_into_package_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("ASICPERF_CACHE", str(not_a_folder))
    before = _numba_files_in_package()

    out = _compile_provider_exp_row()

    np.testing.assert_allclose(out, [1.0, np.e], rtol=1e-6)
    assert _numba_files_in_package() == before
