"""The core clock, measured rather than read: a VM's /proc/cpuinfo reports the TSC rate
(2.6 GHz on a Zen 4 that boosts to 3.7) and cpufreq is often absent, so a ceiling built on the
reported clock is no upper bound.

The measurement times a chain of dependent integer operations whose latency is one cycle on
every x86 and Arm core: each step is `x = (x ^ i) + (x >> 3)`, an xor and a shift side by side,
then a register add, so two cycles per step whatever the core's width. No immediate add (some
cores retire those at rename) and no three-operand address arithmetic (three cycles on some)
is on the chain. Chains are short (about a millisecond) and the fastest of many counts, so a
neighbour that takes the core for a while slows some repeats, not the result. A scalar chain
runs at the highest clock the core reaches; vector code may clock lower, which keeps a
ceiling built on this clock an upper bound.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

CYCLES_PER_STEP = 2
_STEPS = 1_000_000
_REPEATS = 40


@dataclass(frozen=True)
class ClockMeasurement:
    """The fastest chain's clock in GHz, and how it was measured."""

    ghz: float
    method: str


def measure_clock(
    steps: int = _STEPS, repeats: int = _REPEATS, chain: Callable[[int, int], int] | None = None
) -> ClockMeasurement | None:
    """The clock from the fastest of `repeats` chains of `steps` steps; None without numba,
    which compiles the chain (an interpreted loop measures the interpreter). `chain` replaces
    the compiled one (tests)."""
    if chain is None:
        chain = _compiled_chain()
        if chain is None:
            return None
    chain(16, 1)  # compile and warm up outside the timing
    best = min(_seconds(chain, steps) for _ in range(repeats))
    return ClockMeasurement(
        ghz=CYCLES_PER_STEP * steps / best / 1e9,
        method=(
            f"measured: {steps:,} dependent steps of 1-cycle integer ops "
            f"({CYCLES_PER_STEP} cycles each), fastest of {repeats}"
        ),
    )


def dependent_chain(steps: int, x: int) -> int:
    """The timed loop: every step depends on the previous one, two 1-cycle ops deep."""
    for i in range(steps):
        x = (x ^ i) + (x >> 3)
    return x


@functools.cache
def _compiled_chain() -> Callable[[int, int], int] | None:
    try:
        import numba
    except ImportError:
        return None
    # cache=False: a compiled-code cache written next to this module would land in
    # site-packages on a regular install.
    return numba.njit(cache=False)(dependent_chain)


def _seconds(chain: Callable[[int, int], int], steps: int) -> float:
    start = time.perf_counter()
    chain(steps, 1)
    return time.perf_counter() - start
