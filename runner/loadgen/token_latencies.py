"""A token run's TTFT and TPOT, as LoadGen logged them in its detail log (LLM runs).

LoadGen times each sample's first token from the query's scheduled time (TTFT), and its TPOT
as (completion - first token) / (tokens - 1): the pace of the tokens after the first. Both
are per sample, sorted and indexed as its latencies are (performance.py). Nothing here is
recomputed.

The keys, as LoadGen 6.0 spells them outside Offline: `result_first_token_{min,max,mean}
_latency_ns` and `result_first_token_{P}_percentile_latency_ns` (TTFT),
`result_time_to_output_token_{min,max,mean}` (ns, though the key does not say) and
`result_time_per_output_token_{P}_percentile_ns` (TPOT), `result_completed_tokens_per_second`.
Offline takes no first token, so it logs only `result_tokens_per_second`. Not read:
`result_token_throughput`, which divides by the mean latency in ns as if it were seconds
(1e-7 tokens/s on a run of 140).

The bounds are what LoadGen judged: the server scenario's `ttft_latency` and `tpot_latency`
at its target latency percentile. It logs them for every token run but Offline, yet checks
them only in Server, so they are reported there only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ir.errors import AsicperfError
from runner.loadgen.detail_log import DetailLog
from runner.loadgen.performance import NS_PER_MS, LoadgenLatency, latency_ms


@dataclass(frozen=True)
class TokenLatencies:
    ttft_ms: LoadgenLatency | None  # None in Offline, which takes no first token
    tpot_ms: LoadgenLatency | None
    tokens_per_s: float  # LoadGen's completed tokens per second
    ttft_bound_ms: float | None  # Server only: the bounds LoadGen judged
    tpot_bound_ms: float | None


def token_latencies_of(log: DetailLog) -> TokenLatencies:
    """The token figures of a token run's detail log; a missing figure, or a run without token
    latencies, is a one-line error."""
    if not log.token_latencies:
        raise AsicperfError(f"{log.path}: LoadGen ran without token latencies: no TTFT or TPOT")
    scenario = log.text("effective_scenario")
    if scenario == "Offline":
        return TokenLatencies(None, None, log.number("result_tokens_per_second"), None, None)
    server = scenario == "Server"
    return TokenLatencies(
        ttft_ms=latency_ms(
            log,
            mean_key="result_first_token_mean_latency_ns",
            min_key="result_first_token_min_latency_ns",
            max_key="result_first_token_max_latency_ns",
            percentile_key="result_first_token_{percent}_percentile_latency_ns",
        ),
        tpot_ms=latency_ms(
            log,
            mean_key="result_time_to_output_token_mean",
            min_key="result_time_to_output_token_min",
            max_key="result_time_to_output_token_max",
            percentile_key="result_time_per_output_token_{percent}_percentile_ns",
        ),
        tokens_per_s=log.number("result_completed_tokens_per_second"),
        ttft_bound_ms=log.number("requested_server_ttft_latency") / NS_PER_MS if server else None,
        tpot_bound_ms=log.number("requested_server_tpot_latency") / NS_PER_MS if server else None,
    )
