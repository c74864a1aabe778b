"""Per-sample token timings from LoadGen's trace, and goodput: hand-written traces in LoadGen
6.0's format (Server pairs a first token with its query, other scenarios by sample number),
the goodput arithmetic on exact timings, and real LoadGen token runs of a fake stream of known
delays (the trace is written for token runs only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ir.errors import AsicperfError
from runner.loadgen.goodput import goodput
from runner.loadgen.run import run_loadgen
from runner.loadgen.sample_trace import SampleTokenTiming, sample_timings
from runner.loadgen.token_run import run_token_loadgen
from runner.results.llm import Goodput
from tests.loadgen_fakes import SleepingSession
from tests.test_loadgen_tokens import (
    FIRST_S,
    SHORT_SERVER,
    STEP_S,
    TOKENS,
    StreamingSession,
    token_settings,
)

HEADER = '{"traceEvents":[\n'
FOOTER = (
    '{"name":"LastTrace"}\n],\n"displayTimeUnit":"ns",\n"otherData":{\n'
    '"ts":1796491476751132.750,\n"version":"MLPerf LoadGen v1.0"\n}\n}\n'
)
LOG_DETAIL = (
    '{"name":"LogDetail","ph":"X","pid":7,"tid":8,"ts":99.940,"dur":12.048,'
    '"args":{"key":""loadgen_version""}},\n'
)


def sample(seq: int, ts: str, issue_ns: int, complete_ns: int, name: str = "Sample") -> str:
    begin = (
        f'{{"name":"{name}","cat":"default","ph":"b","pid":7,"id":{seq},"ts":{ts},'
        f'"args":{{"sample_seq":{seq},"query_seq":0,"sample_idx":3,'
        f'"issue_start_ns":{issue_ns},"complete_ns":{complete_ns}}}}},\n'
    )
    end = f'{{"name":"{name}","cat":"default","ph":"e", "pid":7,"id":{seq},"ts":1.0}},\n'
    return begin + end


def counter(name: str, ts: str, issue_delay: int, issue_to_done: int) -> str:
    return (
        f'{{"name":"{name}","ph": "C","pid":7,"ts":{ts},'
        f'"args":{{ "issue_delay":{issue_delay},"issue_to_done":{issue_to_done}}}}},\n'
    )


def write_trace(tmp_path: Path, *events: str, footer: str = FOOTER) -> Path:
    path = tmp_path / "mlperf_log_trace.json"
    path.write_text(HEADER + "".join(events) + LOG_DETAIL + footer)
    return path


def test_server_first_tokens_pair_with_their_query_in_ms(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path,
        counter("Token_Latency", "18048.251", 117668, 8334384),
        counter("Token_Latency", "77.044", 201, 4202249),  # sample 0's, logged late
        counter("Latency", "77.044", 201, 7328934),
        sample(0, "77.044", 201, 7329135),
        counter("Latency", "18048.251", 117668, 11479557),
        sample(1, "18048.251", 117668, 11597225),
    )
    assert sample_timings(path) == (
        SampleTokenTiming(sample_seq=0, ttft_ms=4.20245, latency_ms=7.329135),
        SampleTokenTiming(sample_seq=1, ttft_ms=8.452052, latency_ms=11.597225),
    )


def test_samples_of_one_query_pair_by_sequence_number_in_sample_order(tmp_path: Path) -> None:
    path = write_trace(  # Offline: one query, so one scheduled time for every sample
        tmp_path,
        sample(1, "98.546", 161, 11612464, name="Token"),
        sample(1, "98.546", 161, 14721153),
        sample(0, "98.546", 161, 2259971, name="Token"),
        sample(0, "98.546", 161, 5401888),
    )
    assert sample_timings(path) == (
        SampleTokenTiming(sample_seq=0, ttft_ms=2.259971, latency_ms=5.401888),
        SampleTokenTiming(sample_seq=1, ttft_ms=11.612464, latency_ms=14.721153),
    )


@pytest.mark.parametrize(
    ("events", "footer", "message"),
    [
        ((sample(0, "9.0", 1, 5),), "", "LoadGen's trace is incomplete (no LastTrace event)"),
        ((), FOOTER, "LoadGen's trace has no completed sample"),
        ((sample(0, "9.0", 1, 5),), FOOTER, "LoadGen's trace has 0 first tokens for 1 samples"),
        (
            (counter("Token_Latency", "8.0", 1, 2), sample(0, "9.0", 1, 5)),
            FOOTER,
            ":3: no first token in LoadGen's trace for this sample",
        ),
        (
            ('{"name":"Sample","cat":"default","ph":"b","pid":7,"ts":9.0,"args":{"sample_\n',),
            FOOTER,
            ":2: a LoadGen Sample event that is not JSON",
        ),
        (
            (sample(0, "9.0", 1, 5, name="Token").replace('"complete_ns":5', '"complete_ns":"5"'),),
            FOOTER,
            ":2: a LoadGen Token event without 'complete_ns'",
        ),
    ],
)
def test_a_bad_trace_is_one_line_naming_the_file(
    events: tuple[str, ...], footer: str, message: str, tmp_path: Path
) -> None:
    path = write_trace(tmp_path, *events, footer=footer)
    with pytest.raises(AsicperfError) as raised:
        sample_timings(path)
    assert str(raised.value).startswith(str(path)) and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_trace_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AsicperfError, match=r"mlperf_log_trace\.json: cannot read LoadGen's trace"):
        sample_timings(tmp_path / "mlperf_log_trace.json")


TIMINGS = (
    SampleTokenTiming(sample_seq=0, ttft_ms=20.0, latency_ms=50.0),  # TPOT 10: both bounds, met
    SampleTokenTiming(sample_seq=1, ttft_ms=20.5, latency_ms=26.5),  # TTFT over
    SampleTokenTiming(sample_seq=2, ttft_ms=5.0, latency_ms=38.0),  # TPOT 11: over
    SampleTokenTiming(sample_seq=3, ttft_ms=1.0, latency_ms=4.0),  # TPOT 1: met
)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (4, Goodput(requests_per_s=4.0, met=2, requests=4)),
        (2, Goodput(requests_per_s=2.0, met=1, requests=4)),  # TPOT 30, 6, 33, 3
        (1, Goodput(requests_per_s=6.0, met=3, requests=4)),  # no TPOT: TTFT alone
    ],
)
def test_goodput_counts_the_samples_that_meet_both_bounds(tokens: int, expected: Goodput) -> None:
    result = goodput(
        TIMINGS, tokens_per_sample=tokens, ttft_bound_ms=20.0, tpot_bound_ms=10.0, duration_s=0.5
    )
    assert result == expected


@pytest.mark.parametrize(
    ("tokens", "duration_s", "message"),
    [
        (0, 1.0, "goodput needs at least one token per sample, got 0"),
        (4, 0.0, "goodput needs a positive run duration, got 0.0 s"),
    ],
)
def test_goodput_refuses_what_it_cannot_count(tokens: int, duration_s: float, message: str) -> None:
    with pytest.raises(AsicperfError, match=message):
        goodput(
            TIMINGS,
            tokens_per_sample=tokens,
            ttft_bound_ms=20.0,
            tpot_bound_ms=10.0,
            duration_s=duration_s,
        )


def test_a_server_token_run_times_each_sample_and_its_goodput(tmp_path: Path) -> None:
    settings = token_settings(**SHORT_SERVER, ttft_ms=400.0, tpot_ms=50.0)
    run = run_token_loadgen(settings, StreamingSession(), sample_count=3, log_dir=tmp_path)
    performance, tokens, samples = run.loadgen.performance, run.tokens, run.samples
    assert performance is not None and tokens is not None and samples is not None
    assert [timing.sample_seq for timing in samples] == list(range(performance.query_count))
    for timing in samples:
        assert timing.ttft_ms >= FIRST_S * 1e3
        assert timing.latency_ms >= (FIRST_S + (TOKENS - 1) * STEP_S) * 1e3
    # the same samples as LoadGen's own figures, to its nanosecond
    assert tokens.ttft_ms is not None
    assert min(timing.ttft_ms for timing in samples) == tokens.ttft_ms.min
    assert max(timing.latency_ms for timing in samples) == performance.latency_ms.max

    duration_s = run.loadgen.timing.duration_s
    within = goodput(samples, TOKENS, 400.0, 50.0, duration_s)  # the bounds LoadGen judged
    count = len(samples)
    assert within == Goodput(requests_per_s=count / duration_s, met=count, requests=count)
    under_first_token = goodput(
        samples,
        tokens_per_sample=TOKENS,
        ttft_bound_ms=FIRST_S * 1e3 / 2,
        tpot_bound_ms=50.0,
        duration_s=duration_s,
    )
    assert under_first_token == Goodput(requests_per_s=0.0, met=0, requests=count)
    under_step = goodput(
        samples, tokens_per_sample=TOKENS, ttft_bound_ms=400.0, tpot_bound_ms=1.0, duration_s=1.0
    )
    assert under_step.met == 0


def test_offline_samples_of_one_query_follow_each_other(tmp_path: Path) -> None:
    session = StreamingSession(first_s=0.002, step_s=0.001)
    settings = token_settings(scenario="offline", min_duration_s=0.02, min_queries=4)
    run = run_token_loadgen(settings, session, sample_count=2, log_dir=tmp_path)
    assert run.samples is not None and len(run.samples) >= 4
    # served back to back from one scheduled time: each sample's first token after the last
    # sample's completion, its own completion after its first token
    times = [t for timing in run.samples for t in (timing.ttft_ms, timing.latency_ms)]
    assert times == sorted(times) and times[0] >= 2.0


def test_only_token_performance_runs_write_the_trace(tmp_path: Path) -> None:
    accuracy = run_token_loadgen(
        token_settings(),
        StreamingSession(first_s=0.0, step_s=0.0),
        sample_count=2,
        log_dir=tmp_path / "accuracy",
        accuracy=True,
    )
    assert accuracy.samples is None and accuracy.loadgen.files.trace.stat().st_size == 0
    batches = run_loadgen(
        token_settings(token_latencies=False, min_queries=4),
        SleepingSession(0.0, batch_size=1),
        batch_count=2,
        batch_size=1,
        log_dir=tmp_path / "batches",
    )
    assert batches.files.trace.stat().st_size == 0
