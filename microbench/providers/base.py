"""The contract between the op benchmarks and an implementation of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from microbench.ops import BenchCase
from microbench.timing import DeviceTimer


@dataclass(frozen=True)
class Kernel:
    """A prepared implementation: `run` is the timed call (inputs already converted and in
    place); `result` fetches the last run's output as numpy, outside the timed region, so it can
    be checked against the op's reference before any timing counts. A device kernel gives a
    `device_timer` (CUDA events or its runtime's equivalent), so that its samples exclude launch
    and synchronisation cost."""

    run: Callable[[], None]
    result: Callable[[], np.ndarray]
    device_timer: DeviceTimer | None = None


class Provider(ABC):
    """One implementation of some ops: numpy, hand-written numba kernels, a runtime's single-op
    graphs, a vendor's library."""

    name: str
    # The device the kernels run on: a slug in the hardware database, or "host" for this
    # machine's CPU as `runner hw show host` measures it. Roofline figures are against it.
    hardware: str = "host"

    @abstractmethod
    def unsupported_reason(self, case: BenchCase) -> str | None:
        """Why this provider cannot run `case` (op, dtype or shape), or None when it can."""

    @abstractmethod
    def prepare(self, case: BenchCase, inputs: Mapping[str, np.ndarray]) -> Kernel:
        """Everything outside the timed region (compiling, allocating, copying the inputs in)."""
