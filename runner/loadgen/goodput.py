"""Goodput of a Server token run: the requests (samples) that met every constraint, per second.

LoadGen judges its TTFT and TPOT bounds on percentiles of each figure separately; goodput
asks of each sample whether it met both, from its own timings (sample_trace.py). A sample's
TPOT is LoadGen's per-sample one, (latency - TTFT) / (n - 1) for its n tokens: the pace of the
tokens after the first. A one-token sample has none, so only its TTFT is judged.

The duration to pass is the SUT's span of the run, first issue to last completion
(`SutTiming.duration_s`): LoadGen's own throughput divides by its span from the test's start
to the final query's completion, but its detail log gives only the quotient ((samples - 1) /
span, to 6 digits, undefined for one sample), not the span. The two differ by the first
query's issue delay, microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from ir.errors import AsicperfError
from runner.loadgen.sample_trace import SampleTokenTiming
from runner.results.llm import Goodput


def goodput(
    timings: Sequence[SampleTokenTiming],
    tokens_per_sample: int,
    ttft_bound_ms: float,
    tpot_bound_ms: float,
    duration_s: float,
) -> Goodput:
    """`timings`' samples that met both bounds, per second of `duration_s`. Every sample
    generated `tokens_per_sample` tokens, the count LoadGen was given (its TPOT divides by
    it)."""
    if tokens_per_sample < 1:
        raise AsicperfError(f"goodput needs at least one token per sample, got {tokens_per_sample}")
    if not duration_s > 0:
        raise AsicperfError(f"goodput needs a positive run duration, got {duration_s} s")
    met = sum(_meets(timing, tokens_per_sample, ttft_bound_ms, tpot_bound_ms) for timing in timings)
    return Goodput(requests_per_s=met / duration_s, met=met, requests=len(timings))


def _meets(
    timing: SampleTokenTiming, tokens: int, ttft_bound_ms: float, tpot_bound_ms: float
) -> bool:
    if timing.ttft_ms > ttft_bound_ms:
        return False
    return tokens == 1 or (timing.latency_ms - timing.ttft_ms) / (tokens - 1) <= tpot_bound_ms
