"""What asicperf asks of a LoadGen run, in asicperf's units (seconds, milliseconds, items/s).

Checked when built, so bad input is one line before anything runs. LoadGen itself accepts
almost anything: a Server run with no target QPS runs at its default 1 QPS, a percentile of 1.5
indexes past its latency array, a setting for another scenario is ignored without a word. Each
of those is refused here instead, naming the setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ir.errors import AsicperfError

SCENARIOS = ("single-stream", "multi-stream", "server", "offline")
SEED_LIMIT = 2**64  # LoadGen's seeds are uint64


@dataclass(frozen=True, kw_only=True)
class LoadgenSettings:
    """One scenario's rules. None means LoadGen's own default for the scenario (the latency
    percentile: 0.9 single-stream, 0.99 multi-stream and server; samples per query: 8).

    `latency_bound_ms` is the Server scenario's target latency; in the other scenarios LoadGen
    has no bound, and asicperf uses it only to pick the best batch size. `server_qps` counts
    items per second, as `--server-qps` does: LoadGen's queries per second are that / b.
    `min_queries` is LoadGen's minimum query count: queries of one batch, of
    `samples_per_query` batches in multi-stream, and batches in offline (whose one query holds
    them all). `seed` seeds LoadGen's three generators (QSL, sample index, schedule).

    `token_latencies` is LoadGen's `use_token_latencies`, for a token-streaming session (LLMs,
    tokens.py): LoadGen then also times each sample's first token (TTFT) and the time per
    output token after it (TPOT). It judges them in the server scenario only, against
    `ttft_ms` and `tpot_ms` at the target latency percentile, so a token server run needs
    both, and elsewhere they are refused (LoadGen would ignore them). Its latency bound stays
    required: LoadGen no longer judges the sequence latency by it, but still counts the
    sequences over it."""

    scenario: str
    min_duration_s: float
    min_queries: int
    max_duration_s: float | None = None
    latency_bound_ms: float | None = None
    server_qps: float | None = None
    latency_percentile: float | None = None
    samples_per_query: int | None = None
    seed: int = 0
    token_latencies: bool = False
    ttft_ms: float | None = None
    tpot_ms: float | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise AsicperfError(problems[0])


def _problems(s: LoadgenSettings) -> list[str]:
    """Every check in order; the first problem found is the one reported."""
    problems = []
    if s.scenario not in SCENARIOS:
        problems.append(f"scenario '{s.scenario}': expected one of {', '.join(SCENARIOS)}")
    if not (math.isfinite(s.min_duration_s) and s.min_duration_s >= 0):
        problems.append(f"min duration {s.min_duration_s} s: must be a finite number ≥ 0")
    if s.min_queries < 1:
        problems.append(f"min query count {s.min_queries}: LoadGen needs at least 1")
    if s.max_duration_s is not None and not s.max_duration_s >= max(s.min_duration_s, 1e-3):
        problems.append(
            f"max duration {s.max_duration_s} s: must be ≥ the min duration "
            f"{s.min_duration_s:g} s and ≥ 1 ms, or every run stops INVALID"
        )
    problems += _scenario_problems(s)
    problems += _token_problems(s)
    if s.latency_bound_ms is not None and not s.latency_bound_ms > 0:
        problems.append(f"latency bound {s.latency_bound_ms} ms: must be > 0")
    if s.latency_percentile is not None and not 0 < s.latency_percentile < 1:
        problems.append(f"latency percentile {s.latency_percentile}: must be in (0, 1)")
    if s.samples_per_query is not None and s.samples_per_query < 1:
        problems.append(f"samples per query {s.samples_per_query}: must be ≥ 1")
    if not 0 <= s.seed < SEED_LIMIT:
        problems.append(f"seed {s.seed}: LoadGen's seeds are in [0, 2**64)")
    return problems


def _scenario_problems(s: LoadgenSettings) -> list[str]:
    """Settings a scenario needs, and settings LoadGen would silently ignore in it."""
    problems = []
    if s.scenario == "server":
        if s.server_qps is None or not s.server_qps > 0:
            problems.append("the server scenario needs an arrival rate: --server-qps > 0")
        if s.latency_bound_ms is None:
            problems.append("the server scenario needs a latency bound: --latency-bound MS")
    elif s.server_qps is not None:
        problems.append(f"--server-qps applies to the server scenario only, not {s.scenario}")
    if s.scenario == "offline" and s.latency_percentile is not None:
        problems.append("the offline scenario has no latency percentile: LoadGen ignores it")
    if s.scenario != "multi-stream" and s.samples_per_query is not None:
        problems.append(f"samples per query apply to multi-stream only, not {s.scenario}")
    return problems


def _token_problems(s: LoadgenSettings) -> list[str]:
    """TTFT and TPOT bounds: LoadGen's defaults (100 ms each) would judge a token server run
    the user gave no bound for, and it ignores the bounds in any other run."""
    bounds = {"TTFT": s.ttft_ms, "TPOT": s.tpot_ms}
    given = [name for name, bound in bounds.items() if bound is not None]
    if given and not s.token_latencies:
        return [f"a {'/'.join(given)} bound applies to token-latency (LLM) runs only"]
    if given and s.scenario != "server":
        return [
            f"TTFT and TPOT bounds apply to the server scenario only, not {s.scenario}: "
            "LoadGen ignores them there"
        ]
    if s.token_latencies and s.scenario == "server" and len(given) < len(bounds):
        return ["the server scenario with token latencies needs both a TTFT and a TPOT bound"]
    return [
        f"{name} bound {bound} ms: must be a finite number > 0"
        for name, bound in bounds.items()
        if bound is not None and not (math.isfinite(bound) and bound > 0)
    ]
