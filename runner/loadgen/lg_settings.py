"""`LoadgenSettings` as LoadGen's `TestSettings`, for one batch size.

LoadGen counts samples and queries where asicperf counts items: one LoadGen sample is one
batch of b items, so the Server arrival rate becomes server_qps / b queries per second.

LoadGen also needs to know roughly how long a batch takes: it generates its queries before
the run from an expected latency (SingleStream, MultiStream) or an expected throughput
(Offline). Too slow a guess and it runs out of queries before the minimum duration, and the
run is INVALID; too fast a guess only makes it generate more than it issues (Offline: run
longer). So the expectation is the fastest warm-up batch (warmup.py). Generated queries cost
LoadGen memory (under a kilobyte each): a session of a few microseconds with a long minimum
duration makes millions. An accuracy run needs no expectation: LoadGen then issues every
sample once, whatever it expects.

The minimum query count is LoadGen's `min_query_count`, which Offline reads as a minimum
sample count: either way, at least that many batches.

Token latencies (LLM runs) are LoadGen's `use_token_latencies`; the TTFT and TPOT bounds are
its `ttft_latency` and `tpot_latency` (ns), set in the server scenario only, where LoadGen
judges them (settings.py refuses them elsewhere).
"""

from __future__ import annotations

import mlperf_loadgen as lg

from runner.loadgen.settings import LoadgenSettings

_SCENARIOS = {
    "single-stream": lg.TestScenario.SingleStream,
    "multi-stream": lg.TestScenario.MultiStream,
    "server": lg.TestScenario.Server,
    "offline": lg.TestScenario.Offline,
}
NS_PER_S = 1e9
NS_PER_MS = 1e6


def to_test_settings(
    settings: LoadgenSettings,
    *,
    batch_size: int,
    expected_batch_s: float | None,
    accuracy: bool,
) -> lg.TestSettings:
    """LoadGen's settings for measuring `batch_size` (accuracy: LoadGen's accuracy mode, every
    sample once with its response logged). `expected_batch_s` > 0: how long one batch takes;
    None keeps LoadGen's defaults (fine for an accuracy run only)."""
    test = lg.TestSettings()
    test.scenario = _SCENARIOS[settings.scenario]
    test.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    test.min_duration_ms = round(settings.min_duration_s * 1e3)
    test.min_query_count = settings.min_queries
    if settings.max_duration_s is not None:
        test.max_duration_ms = round(settings.max_duration_s * 1e3)
    test.qsl_rng_seed = test.sample_index_rng_seed = test.schedule_rng_seed = settings.seed
    test.use_token_latencies = settings.token_latencies
    _fill_scenario(test, settings, batch_size, expected_batch_s)
    return test


def _fill_scenario(
    test: lg.TestSettings,
    settings: LoadgenSettings,
    batch_size: int,
    expected_batch_s: float | None,
) -> None:
    percentile = settings.latency_percentile
    if settings.scenario == "single-stream":
        if expected_batch_s is not None:
            test.single_stream_expected_latency_ns = expected_batch_s * NS_PER_S
        if percentile is not None:
            test.single_stream_target_latency_percentile = percentile
    elif settings.scenario == "multi-stream":
        if settings.samples_per_query is not None:
            test.multi_stream_samples_per_query = settings.samples_per_query
        if expected_batch_s is not None:
            query_s = expected_batch_s * test.multi_stream_samples_per_query
            test.multi_stream_expected_latency_ns = query_s * NS_PER_S
        if percentile is not None:
            test.multi_stream_target_latency_percentile = percentile
    elif settings.scenario == "server":
        assert settings.server_qps is not None and settings.latency_bound_ms is not None
        test.server_target_qps = settings.server_qps / batch_size
        test.server_target_latency_ns = round(settings.latency_bound_ms * NS_PER_MS)
        if percentile is not None:
            test.server_target_latency_percentile = percentile
        if settings.token_latencies:
            assert settings.ttft_ms is not None and settings.tpot_ms is not None
            test.ttft_latency = round(settings.ttft_ms * NS_PER_MS)
            test.tpot_latency = round(settings.tpot_ms * NS_PER_MS)
    elif expected_batch_s is not None:
        test.offline_expected_qps = 1.0 / expected_batch_s
