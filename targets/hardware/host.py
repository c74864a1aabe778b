"""The machine asicperf runs on: what its CPU is, what it measurably does, what it can do.

An accelerator's speed-up only means something against the box the user already has, so the
host gets the same treatment as a catalogue entry, plus measurements: the core clock (a chain
of dependent integer ops, targets/hardware/clock.py), FP32 GEMM throughput through numpy's BLAS
and memory bandwidth from numpy copy/triad on arrays far larger than the last-level cache.
The compute ceilings are upper bounds derived from the cores' units and that clock
(targets/hardware/cpu_peaks.py); the GEMM and triad rates are what a library achieves, shown
beside them, never as the peak. Measuring takes a few seconds, so results are cached per CPU
model and core count, in a versioned cache: a cache written by an older version is measured
again, since it lacks what the ceilings need.

numpy is imported by the measurements alone: every target names its device through
`detect_cpu`, and `runner targets list` must not load numpy for that.
"""

from __future__ import annotations

import functools
import itertools
import json
import platform
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ir.errors import AsicperfError
from ir.files import CACHE_ENV, cache_root, write_text_atomically
from targets.hardware.clock import measure_clock
from targets.hardware.cpu_peaks import CoreModel, IsaPeak, identify_core, isa_peaks

ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
)
CACHE_SCHEMA = "asicperf.host-cache/2"  # /2: adds the measured clock and read bandwidth
_SYS_CPU = Path("/sys/devices/system/cpu")
_GEMM_SIZES = (1024, 2048, 4096)  # smaller ones measure thread wake-up more than FLOPs
_GEMM_BUDGET_S = 1.5
_REPEATS = 3
_ARRAY_BYTES_RANGE = (64 * 2**20, 512 * 2**20)
_TRIAD_BLOCK = 32 * 1024  # float64 elements per step: 256 KiB, so `a` stays in L2 between passes


@dataclass(frozen=True)
class CpuInfo:
    """The host CPU as /proc/cpuinfo and /proc/meminfo describe it; vendor, family and model
    number (x86 only) identify the core's execution units."""

    model: str
    sockets: int
    cores: int
    threads: int
    flags: tuple[str, ...]
    clock_ghz: float | None
    clock_source: str | None
    memory_gib: float | None
    vendor: str | None = None
    family: int | None = None
    model_number: int | None = None

    def cache_key(self) -> str:
        return f"{self.model} | {self.cores} cores"


@dataclass(frozen=True)
class HostMeasurement:
    """Best-of-repeats results; bandwidths count bytes the STREAM way (copy 2, triad 3 per
    element), so a triad's write-allocate traffic is not credited. `clock_ghz` is None where
    it could not be measured (no numba)."""

    fp32_gemm_gflops: float
    gemm_size: int
    copy_gbs: float
    triad_gbs: float
    array_mib: int
    llc_mib: int | None
    threads: int
    numpy_version: str
    measured_at: str
    seconds: float
    clock_ghz: float | None = None
    clock_method: str | None = None
    read_gbs: float | None = None

    @property
    def fastest_stream(self) -> tuple[str, float]:
        """The memory roof: the fastest of read, copy and triad, the closest measured figure
        to the DRAM's own, which nothing inside the machine publishes."""
        streams = {"read": self.read_gbs or 0.0, "copy": self.copy_gbs, "triad": self.triad_gbs}
        name = max(streams, key=lambda stream: streams[stream])
        return name, streams[name]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> HostMeasurement:
        return cls(**record)


@dataclass(frozen=True)
class HostProfile:
    """The CPU, its measurements, and the ceilings derived from both."""

    cpu: CpuInfo
    measurement: HostMeasurement
    from_cache: bool
    cache_path: str

    @property
    def core(self) -> CoreModel:
        return identify_core(self.cpu)

    @property
    def clock(self) -> tuple[float, str] | None:
        """The clock the ceilings use and where it comes from: the measured one, or the
        reported one where that is higher (a ceiling must not fall below what ran)."""
        measured = self.measurement.clock_ghz
        reported = self.cpu.clock_ghz
        if measured is not None and (reported is None or measured >= reported):
            return measured, "measured"
        if reported is None:
            return None
        above = f", above the measured {measured:.2f} GHz" if measured is not None else ""
        return reported, f"{self.cpu.clock_source}{above}"

    @property
    def peaks(self) -> dict[str, IsaPeak]:
        """Per-dtype upper bounds; empty when no clock is known."""
        clock = self.clock
        return isa_peaks(self.cpu, *clock) if clock else {}

    def to_json(self) -> dict[str, Any]:
        clock = self.clock
        return {
            "cpu": asdict(self.cpu),
            "core": asdict(self.core),
            "clock": {"ghz": clock[0], "source": clock[1]} if clock else None,
            "ceilings": {dtype: asdict(peak) for dtype, peak in self.peaks.items()},
            "measured": self.measurement.to_json(),
            "from_cache": self.from_cache,
            "cache_path": self.cache_path,
        }


def parse_cpuinfo(cpuinfo: str, meminfo: str | None = None) -> CpuInfo:
    """Parse /proc/cpuinfo (and /proc/meminfo) text; a function of text so tests need no host."""
    blocks = [_key_values(block) for block in re.split(r"\n\s*\n", cpuinfo) if block.strip()]
    processors = [block for block in blocks if "processor" in block] or blocks[:1]
    first = processors[0] if processors else {}
    model = first.get("model name") or first.get("Processor") or first.get("cpu model") or "?"
    sockets = len({block.get("physical id", "0") for block in processors}) or 1
    core_ids = {(b["physical id"], b["core id"]) for b in processors if "core id" in b}
    if core_ids:
        cores = len(core_ids)
    elif first.get("cpu cores", "").isdigit():
        cores = int(first["cpu cores"]) * sockets
    else:
        cores = max(len(processors), 1)
    flags = set((first.get("flags") or first.get("Features") or "").split())
    family, model_number = first.get("cpu family", ""), first.get("model", "")
    clock = re.search(r"@\s*([\d.]+)\s*GHz", model)
    clock_ghz, clock_source = (float(clock.group(1)), "model name") if clock else (None, None)
    if clock_ghz is None and _is_number(first.get("cpu MHz", "")):
        clock_ghz, clock_source = float(first["cpu MHz"]) / 1000, "current cpu MHz"
    return CpuInfo(
        model=" ".join(model.split()),
        sockets=sockets,
        cores=cores,
        threads=max(len(processors), 1),
        flags=tuple(flag for flag in ISA_FLAGS if flag in flags),
        clock_ghz=clock_ghz,
        clock_source=clock_source,
        memory_gib=_mem_total_gib(meminfo) if meminfo else None,
        vendor=first.get("vendor_id") or None,
        family=int(family) if family.isdigit() else None,
        model_number=int(model_number) if model_number.isdigit() else None,
    )


def detect_cpu() -> CpuInfo:
    """This host's CPU; the cpufreq maximum beats a clock read from /proc/cpuinfo's 'cpu MHz'."""
    cpu = parse_cpuinfo(_read("/proc/cpuinfo") or "", _read("/proc/meminfo"))
    max_khz = _read(_SYS_CPU / "cpu0" / "cpufreq" / "cpuinfo_max_freq")
    if cpu.clock_source != "model name" and max_khz and max_khz.strip().isdigit():
        cpu = replace(cpu, clock_ghz=int(max_khz) / 1e6, clock_source="cpufreq max")
    if cpu.model == "?":
        cpu = replace(cpu, model=platform.machine() or "unknown CPU")
    return cpu


def measure_host(cpu: CpuInfo) -> HostMeasurement:
    """Measure the clock, FP32 GEMM GFLOP/s and copy/triad GB/s now (a few seconds, mostly
    spent first-touching the bandwidth arrays)."""
    import numpy as np

    start = time.perf_counter()
    clock = measure_clock()
    gflops, size = _gemm_gflops()
    llc = _llc_bytes()
    array_bytes = _array_bytes(llc, cpu.memory_gib)
    threads = max(cpu.cores, 1)
    read_gbs, copy_gbs, triad_gbs = _bandwidth_gbs(array_bytes // 8, threads)
    return HostMeasurement(
        fp32_gemm_gflops=gflops,
        gemm_size=size,
        copy_gbs=copy_gbs,
        triad_gbs=triad_gbs,
        array_mib=array_bytes // 2**20,
        llc_mib=llc // 2**20 if llc else None,
        threads=threads,
        numpy_version=np.__version__,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - start, 3),
        clock_ghz=round(clock.ghz, 3) if clock else None,
        clock_method=clock.method if clock else None,
        read_gbs=read_gbs,
    )


def default_cache_path() -> Path:
    return cache_root() / "host.json"


def host_profile(
    *,
    refresh: bool = False,
    measure: Callable[[CpuInfo], HostMeasurement] | None = None,
    cpu: CpuInfo | None = None,
    cache_path: str | Path | None = None,
) -> HostProfile:
    """The host, measured once per CPU model and core count, then read from the cache.

    `refresh` measures again; `measure` and `cpu` replace the real ones (tests).
    """
    cpu = cpu or detect_cpu()
    path = Path(cache_path) if cache_path else default_cache_path()
    entries = _read_cache(path)
    measurement = None if refresh else _cached_measurement(entries, cpu.cache_key())
    from_cache = measurement is not None
    if measurement is None:
        measurement = (measure or measure_host)(cpu)
        entries[cpu.cache_key()] = measurement.to_json()
        document = {"schema": CACHE_SCHEMA, "entries": entries}
        try:
            write_text_atomically(path, json.dumps(document, indent=2, sort_keys=True) + "\n")
        except OSError as error:
            raise AsicperfError(
                f"{path}: cannot write the host cache: {error.strerror or error}"
                f" (set {CACHE_ENV} to a writable folder)"
            ) from error
    return HostProfile(
        cpu=cpu, measurement=measurement, from_cache=from_cache, cache_path=str(path)
    )


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries; a missing, foreign or corrupt cache is empty (it is only a cache)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("schema") != CACHE_SCHEMA:
        return {}
    entries = document.get("entries")
    return entries if isinstance(entries, dict) else {}


def _cached_measurement(entries: dict[str, Any], key: str) -> HostMeasurement | None:
    try:
        return HostMeasurement.from_json(entries[key])
    except (KeyError, TypeError):
        return None


def _gemm_gflops() -> tuple[float, int]:
    """Best FP32 matmul rate over growing sizes; a size is skipped once its predicted time
    (eight times the last one's) would overrun the budget."""
    import numpy as np

    rng = np.random.default_rng(0)
    best, best_size = 0.0, 0
    start = time.perf_counter()
    for n in _GEMM_SIZES:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out = np.empty((n, n), dtype=np.float32)
        np.matmul(a, b, out=out)  # warm-up: BLAS thread pool, page faults
        seconds = _best_seconds(functools.partial(np.matmul, a, b, out=out))
        if 2 * n**3 / seconds / 1e9 > best:
            best, best_size = 2 * n**3 / seconds / 1e9, n
        elapsed = time.perf_counter() - start
        if elapsed + 8 * seconds * (_REPEATS + 1) > _GEMM_BUDGET_S:
            break
    return best, best_size


def _array_bytes(llc_bytes: int | None, memory_gib: float | None) -> int:
    """Per array: four times the last-level caches (the STREAM rule) within 64-512 MiB, and at
    most 1/16 of RAM; a whole number of triad blocks."""
    low, high = _ARRAY_BYTES_RANGE
    wanted = min(max(4 * (llc_bytes or 0), low), high)
    if memory_gib:
        wanted = min(wanted, int(memory_gib * 2**30 / 16))
    return max(wanted // (8 * _TRIAD_BLOCK), 1) * 8 * _TRIAD_BLOCK


def _bandwidth_gbs(elements: int, threads: int) -> tuple[float, float, float]:
    """Read (sum a), copy (b = a) and triad (a = b + s*a, two arrays) GB/s with the arrays
    split across threads: numpy releases the GIL inside these loops, so the threads stream in
    parallel. Each thread first-touches its own part, which also places pages on its NUMA
    node. Reading alone is usually the fastest stream: a reduction kernel reaches it."""
    import numpy as np

    a = np.empty(elements)
    b = np.empty(elements)
    edges = np.linspace(0, elements // _TRIAD_BLOCK, threads + 1).astype(int) * _TRIAD_BLOCK
    chunks = [slice(lo, hi) for lo, hi in itertools.pairwise(edges.tolist()) if hi > lo]

    def fill(part: slice) -> None:
        a[part] = 1.0
        b[part] = 2.0

    def read(part: slice) -> None:
        np.add.reduce(a[part])

    def copy(part: slice) -> None:
        np.copyto(b[part], a[part])

    def triad(part: slice) -> None:
        for lo in range(part.start, part.stop, _TRIAD_BLOCK):
            block = slice(lo, lo + _TRIAD_BLOCK)
            np.multiply(a[block], 0.5, out=a[block])
            np.add(a[block], b[block], out=a[block])

    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:

        def run(kernel: Callable[[slice], None]) -> None:
            list(pool.map(kernel, chunks))

        run(fill)
        read_s = _best_seconds(lambda: run(read))
        copy_s = _best_seconds(lambda: run(copy))
        triad_s = _best_seconds(lambda: run(triad))
    return a.nbytes / read_s / 1e9, 2 * a.nbytes / copy_s / 1e9, 3 * a.nbytes / triad_s / 1e9


def _best_seconds(action: Callable[[], object]) -> float:
    times = []
    for _ in range(_REPEATS):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def _llc_bytes() -> int | None:
    """Total size of the last-level caches: each distinct instance (by the CPUs sharing it)
    of the highest cache level counted once."""
    instances: dict[tuple[int, str], int] = {}
    for index in _SYS_CPU.glob("cpu[0-9]*/cache/index[0-9]*"):
        level, size, shared = (_read(index / name) for name in ("level", "size", "shared_cpu_list"))
        parsed = _cache_size_bytes(size or "")
        if level and level.strip().isdigit() and parsed and shared:
            instances[(int(level), shared.strip())] = parsed
    if not instances:
        return None
    top = max(level for level, _ in instances)
    return sum(size for (level, _), size in instances.items() if level == top)


def _cache_size_bytes(text: str) -> int | None:
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip())
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)]


def _mem_total_gib(meminfo: str) -> float | None:
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    return round(int(match.group(1)) / 2**20, 1) if match else None


def _key_values(block: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in block.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
