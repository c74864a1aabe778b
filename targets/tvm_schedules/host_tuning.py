"""What the schedule rules size their tiles from: the vector width, the core count and the data
caches (sizes, and the L1's associativity) of the CPU the code is compiled for, read from Linux's
sysfs, with conservative defaults elsewhere."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

_SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
_DEFAULT_CACHE_BYTES = {1: 32 * 1024, 2: 1024 * 1024, 3: 8 * 1024 * 1024}
_DEFAULT_L1_WAYS = 8


@dataclass(frozen=True)
class CpuTuning:
    """Per-core figures: `l1_bytes`/`l2_bytes` are one core's data caches, `l3_bytes` is shared;
    `l1_ways` is the L1's associativity (addresses `l1_bytes / l1_ways` apart share a set)."""

    vector_bits: int
    cores: int
    l1_bytes: int
    l2_bytes: int
    l3_bytes: int
    l1_ways: int = _DEFAULT_L1_WAYS

    @property
    def l1_set_span(self) -> int:
        """Bytes between addresses that fall in the same L1 set."""
        return max(1, self.l1_bytes // max(1, self.l1_ways))

    def lanes(self, dtype_bits: int = 32) -> int:
        """Elements of `dtype_bits` in one vector register."""
        return max(1, self.vector_bits // dtype_bits)

    def to_json(self) -> dict[str, int]:
        return {
            "vector_bits": self.vector_bits,
            "cores": self.cores,
            "l1_bytes": self.l1_bytes,
            "l2_bytes": self.l2_bytes,
            "l3_bytes": self.l3_bytes,
            "l1_ways": self.l1_ways,
        }


def vector_bits(flags: Collection[str]) -> int:
    """The widest SIMD register the flags prove (x86), else 128 (SSE/NEON baseline)."""
    present = set(flags)
    if "avx512f" in present:
        return 512
    if "avx2" in present or "avx" in present:
        return 256
    return 128


def _parse_size(text: str) -> int:
    """sysfs writes cache sizes as `48K`, `2048K` or `260M`."""
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024, "G": 1024**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def _data_caches(root: Path) -> Iterator[tuple[Path, int, int]]:
    """(index folder, level, bytes) of each data or unified cache sysfs lists under `root`."""
    for index in sorted(root.glob("index[0-9]*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            size = _parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified"):
            yield index, level, size


def cache_sizes(root: Path = _SYSFS_CACHE) -> dict[int, int]:
    """Data (or unified) cache bytes by level; defaults for levels sysfs does not list."""
    return {**_DEFAULT_CACHE_BYTES, **{level: size for _, level, size in _data_caches(root)}}


def l1_ways(root: Path = _SYSFS_CACHE) -> int:
    """The L1 data cache's associativity, or a common 8 when sysfs does not say."""
    for index, level, _ in _data_caches(root):
        try:
            if level == 1:
                return int((index / "ways_of_associativity").read_text())
        except (OSError, ValueError):
            continue
    return _DEFAULT_L1_WAYS


def host_tuning(
    flags: Collection[str], cores: int | None = None, caches: Path = _SYSFS_CACHE
) -> CpuTuning:
    """The tuning for this host: its vector width from `flags`, its measured cache sizes (sysfs
    `caches`), `cores` or every CPU."""
    sizes = cache_sizes(caches)
    return CpuTuning(
        vector_bits=vector_bits(flags),
        cores=cores or os.cpu_count() or 1,
        l1_bytes=sizes[1],
        l2_bytes=sizes[2],
        l3_bytes=sizes[3],
        l1_ways=l1_ways(caches),
    )
