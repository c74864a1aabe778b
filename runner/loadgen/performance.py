"""A performance run's verdict and figures, as LoadGen logged them in its detail log.

Nothing here is recomputed: the verdict is LoadGen's `result_validity`, the reasons are the
checks it logged as failed (in the words of its summary: performance constraints, min
duration, min queries, early stopping), its recommendation and its errors; the latencies are
its percentiles (the sorted sample at index floor(n * p), in ms here), the throughput is its
own figure. An accuracy run logs none of these, so only performance runs are read here.

The figures are in LoadGen's units, where a sample is one batch: items per second is
`samples_per_s` x the batch size (run.py).

A token run (LLMs) is judged differently: its Server constraint is on TTFT and TPOT, not on
the sample latency, so its reason names those bounds; its token figures are read by
token_latencies.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ir.errors import AsicperfError
from runner.loadgen.detail_log import DetailLog

NS_PER_MS = 1e6
# LoadGen's throughput figure per scenario; MultiStream has none (its figure is a latency)
THROUGHPUT_KEYS = {
    "SingleStream": "result_qps_with_loadgen_overhead",
    "MultiStream": None,
    "Server": "result_completed_samples_per_sec",
    "Offline": "result_samples_per_second",
}
# the per-scenario early-stopping estimate of the target percentile, in ns (0: none)
EARLY_STOPPING_LATENCY_KEYS = {
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
}
# LoadgenLatency's field -> the percentile as LoadGen's keys spell it
PERCENTILE_FIELDS = {
    "p50": "50.00",
    "p90": "90.00",
    "p95": "95.00",
    "p97": "97.00",
    "p99": "99.00",
    "p999": "99.90",
}
_EARLY_STOPPING_RESULT = re.compile(r"early_stopping(_\w+)?_result")
_BULLET = re.compile(r"(?:^|\s)\*\s")


@dataclass(frozen=True)
class LoadgenLatency:
    """Milliseconds. Per query in MultiStream (its figure: all the query's samples done), per
    sample elsewhere (SingleStream and Server: a sample is a query). A token run's TTFT and TPOT
    are per sample in every scenario (token_latencies.py)."""

    mean: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p97: float
    p99: float
    p999: float


@dataclass(frozen=True)
class LoadgenPerformance:
    scenario: str  # LoadGen's name: SingleStream, MultiStream, Server, Offline
    valid: bool
    invalid_reasons: tuple[str, ...]  # empty when valid
    latency_ms: LoadgenLatency
    target_latency_percentile: float  # the one LoadGen judged (0.9 = p90)
    early_stopping: tuple[str, ...]  # LoadGen's early-stopping result, one line per point
    early_stopping_latency_ms: float | None  # its estimate of the target percentile, if any
    samples_per_s: float | None  # LoadGen's throughput in batches/s; None for MultiStream
    query_count: int
    overlatency_query_count: int | None  # Server only: queries over the latency bound


def performance_of(log: DetailLog) -> LoadgenPerformance:
    """The performance record of a run's detail log; a missing figure is a one-line error."""
    scenario = log.text("effective_scenario")
    if scenario not in THROUGHPUT_KEYS:
        raise AsicperfError(f"{log.path}: unknown LoadGen scenario '{scenario}'")
    validity = log.text("result_validity")
    if validity not in ("VALID", "INVALID"):
        raise AsicperfError(f"{log.path}: result_validity is '{validity}', not VALID or INVALID")
    throughput_key = THROUGHPUT_KEYS[scenario]
    # a token run's estimate is of TTFT or TPOT, whichever LoadGen checked last: not a latency
    estimate_key = None if log.token_latencies else EARLY_STOPPING_LATENCY_KEYS.get(scenario)
    estimate_ns = log.number(estimate_key) if estimate_key else 0.0
    early_stopping = _early_stopping(log)
    return LoadgenPerformance(
        scenario=scenario,
        valid=validity == "VALID",
        invalid_reasons=() if validity == "VALID" else _reasons(log, early_stopping),
        latency_ms=_latency(log, per_query=scenario == "MultiStream"),
        target_latency_percentile=log.number("effective_target_latency_percentile"),
        early_stopping=early_stopping,
        early_stopping_latency_ms=estimate_ns / NS_PER_MS if estimate_ns else None,
        samples_per_s=log.number(throughput_key) if throughput_key else None,
        query_count=log.integer("result_query_count"),
        overlatency_query_count=(
            log.integer("result_overlatency_query_count") if scenario == "Server" else None
        ),
    )


def _latency(log: DetailLog, *, per_query: bool) -> LoadgenLatency:
    kind = "query_latency" if per_query else "latency"
    ranked = "per_query_latency" if per_query else "latency"
    return latency_ms(
        log,
        mean_key=f"result_mean_{kind}_ns",
        min_key=f"result_min_{kind}_ns",
        max_key=f"result_max_{kind}_ns",
        percentile_key=f"result_{{percent}}_percentile_{ranked}_ns",
    )


def latency_ms(
    log: DetailLog, *, mean_key: str, min_key: str, max_key: str, percentile_key: str
) -> LoadgenLatency:
    """LoadGen's figures (ns) under these keys, in ms. `percentile_key` has a `{percent}`
    slot for the percentile as LoadGen spells it ("99.00"). LoadGen names its latency, TTFT
    and TPOT figures each its own way, so the keys are the caller's."""

    def ms(key: str) -> float:
        return log.number(key) / NS_PER_MS

    percentiles = {
        field: ms(percentile_key.format(percent=percent))
        for field, percent in PERCENTILE_FIELDS.items()
    }
    return LoadgenLatency(mean=ms(mean_key), min=ms(min_key), max=ms(max_key), **percentiles)


def _early_stopping(log: DetailLog) -> tuple[str, ...]:
    """The points of every early-stopping result (latency, or TTFT and TPOT for token runs,
    each point then prefixed "TTFT: " or "TPOT: "), which LoadGen logs as " * point" bullets
    with its line breaks turned into spaces."""
    points = []
    for key, value in log.values.items():
        matched = _EARLY_STOPPING_RESULT.fullmatch(key)
        if matched and isinstance(value, str):
            label = f"{matched.group(1)[1:].upper()}: " if matched.group(1) else ""
            points += [label + " ".join(p.split()) for p in _BULLET.split(value) if p.strip()]
    return tuple(points)


def _reasons(log: DetailLog, early_stopping: tuple[str, ...]) -> tuple[str, ...]:
    """Each check LoadGen logged as failed, then its recommendation and its errors."""
    reasons = []
    if log.has("result_perf_constraints_met") and not log.flag("result_perf_constraints_met"):
        reasons.append(_constraint_reason(log))
    if not log.flag("result_min_duration_met"):
        min_s = log.number("effective_min_duration_ms") / 1e3
        reasons.append(f"min duration not satisfied (min {min_s:g} s)")
    if not log.flag("result_min_queries_met"):
        minimum = log.integer("effective_min_query_count")
        count = log.integer("result_query_count")
        reasons.append(f"min queries not satisfied ({count} queries, min {minimum})")
    if not log.flag("early_stopping_met"):
        sentences = " ".join(p if p.endswith(".") else f"{p}." for p in early_stopping)
        reasons.append(f"early stopping not satisfied: {sentences or 'no result logged'}")
    recommendation = " ".join(str(log.values.get("result_invalid_reason", "")).split())
    if recommendation:
        reasons.append(f"LoadGen recommends: {recommendation}")
    return (*reasons, *log.errors)


def _constraint_reason(log: DetailLog) -> str:
    percentile = log.number("effective_target_latency_percentile") * 100
    if log.token_latencies:  # LoadGen's recommendation, which follows, says which one failed
        ttft_ms = log.number("requested_server_ttft_latency") / NS_PER_MS
        tpot_ms = log.number("requested_server_tpot_latency") / NS_PER_MS
        return (
            f"performance constraints not satisfied: p{percentile:g} TTFT or TPOT over its "
            f"bound (TTFT {ttft_ms:g} ms, TPOT {tpot_ms:g} ms)"
        )
    bound_ms = log.number("effective_target_latency_ns") / NS_PER_MS
    reason = (
        f"performance constraints not satisfied: p{percentile:g} over the {bound_ms:g} ms bound"
    )
    if log.has("result_overlatency_query_count"):
        over = log.integer("result_overlatency_query_count")
        reason += f" ({over} of {log.integer('result_query_count')} queries over)"
    return reason
