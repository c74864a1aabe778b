"""LoadGen settings: bad input is one line before anything runs, and the rest reaches LoadGen's
TestSettings in LoadGen's units (one sample = one batch of b items)."""

from __future__ import annotations

import mlperf_loadgen as lg
import pytest

from ir.errors import AsicperfError
from runner.loadgen.lg_settings import to_test_settings
from runner.loadgen.settings import LoadgenSettings

SERVER = {"scenario": "server", "server_qps": 800.0, "latency_bound_ms": 25.0}


def settings(**fields: object) -> LoadgenSettings:
    return LoadgenSettings(**{"min_duration_s": 2.0, "min_queries": 64, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scenario": "batch"}, "scenario 'batch': expected one of single-stream, multi-stream"),
        ({"scenario": "single-stream", "min_queries": 0}, "min query count 0: LoadGen needs"),
        ({"scenario": "offline", "min_duration_s": -1.0}, "min duration -1.0 s: must be"),
        ({"scenario": "offline", "min_duration_s": float("inf")}, "min duration inf s"),
        ({"scenario": "offline", "max_duration_s": 1.0}, "max duration 1.0 s: must be ≥ the min"),
        ({"scenario": "server", "latency_bound_ms": 10.0}, "needs an arrival rate: --server-qps"),
        ({**SERVER, "server_qps": 0.0}, "needs an arrival rate: --server-qps > 0"),
        ({**SERVER, "latency_bound_ms": None}, "needs a latency bound: --latency-bound MS"),
        ({**SERVER, "latency_bound_ms": -5.0}, "latency bound -5.0 ms: must be > 0"),
        ({**SERVER, "latency_percentile": 1.0}, "latency percentile 1.0: must be in (0, 1)"),
        ({"scenario": "single-stream", "latency_percentile": 0.0}, "must be in (0, 1)"),
        ({"scenario": "single-stream", "server_qps": 100.0}, "--server-qps applies to the server"),
        ({"scenario": "offline", "latency_percentile": 0.9}, "offline scenario has no latency"),
        ({"scenario": "multi-stream", "samples_per_query": 0}, "samples per query 0: must be ≥ 1"),
        ({**SERVER, "samples_per_query": 4}, "multi-stream only, not server"),
        ({"scenario": "offline", "seed": -1}, "seed -1: LoadGen's seeds are in [0, 2**64)"),
    ],
)
def test_bad_settings_are_one_line_before_anything_runs(fields: dict, message: str) -> None:
    with pytest.raises(AsicperfError) as raised:
        settings(**fields)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_server_rate_is_items_per_second_so_loadgen_gets_batches_per_second() -> None:
    server = settings(**SERVER, latency_percentile=0.95, seed=7, max_duration_s=30.0)
    test = to_test_settings(server, batch_size=4, expected_batch_s=0.01, accuracy=False)
    assert test.scenario == lg.TestScenario.Server
    assert test.mode == lg.TestMode.PerformanceOnly
    assert test.server_target_qps == 200.0  # 800 items/s in batches of 4
    assert test.server_target_latency_ns == 25_000_000
    assert test.server_target_latency_percentile == 0.95
    assert (test.min_duration_ms, test.min_query_count, test.max_duration_ms) == (2000, 64, 30000)
    assert (test.qsl_rng_seed, test.sample_index_rng_seed, test.schedule_rng_seed) == (7, 7, 7)


def test_the_expected_batch_time_sizes_what_loadgen_generates() -> None:
    single = to_test_settings(
        settings(scenario="single-stream"), batch_size=1, expected_batch_s=0.002, accuracy=False
    )
    assert single.single_stream_expected_latency_ns == 2_000_000
    assert single.single_stream_target_latency_percentile == 0.9  # LoadGen's default stands
    multi = to_test_settings(
        settings(scenario="multi-stream", samples_per_query=3, latency_percentile=0.9),
        batch_size=2,
        expected_batch_s=0.002,
        accuracy=False,
    )
    assert multi.multi_stream_samples_per_query == 3
    assert multi.multi_stream_expected_latency_ns == pytest.approx(6_000_000)  # 3 batches
    assert multi.multi_stream_target_latency_percentile == 0.9
    offline = to_test_settings(
        settings(scenario="offline"), batch_size=8, expected_batch_s=0.004, accuracy=True
    )
    assert offline.offline_expected_qps == 250.0  # batches/s
    assert offline.mode == lg.TestMode.AccuracyOnly


def test_multi_stream_keeps_loadgens_eight_samples_per_query_unless_set() -> None:
    multi = to_test_settings(
        settings(scenario="multi-stream"), batch_size=1, expected_batch_s=0.001, accuracy=False
    )
    assert multi.multi_stream_samples_per_query == 8
    assert multi.multi_stream_expected_latency_ns == pytest.approx(8_000_000)
    assert multi.multi_stream_target_latency_percentile == 0.99


def test_an_accuracy_run_without_a_warm_up_keeps_loadgens_expectations() -> None:
    default = lg.TestSettings()
    single = to_test_settings(
        settings(scenario="single-stream"), batch_size=1, expected_batch_s=None, accuracy=True
    )
    assert single.single_stream_expected_latency_ns == default.single_stream_expected_latency_ns
