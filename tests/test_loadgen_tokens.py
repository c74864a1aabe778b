"""Token latencies (LLM runs) on LoadGen: a fake streaming session of known delays gives LoadGen's
TTFT and TPOT, a TTFT bound tighter than the session makes the server run INVALID in LoadGen's
words, the tokens reach the accuracy log, and a failing stream still ends the run cleanly."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ir.errors import AsicperfError
from runner.loadgen.detail_log import read_detail_log
from runner.loadgen.lg_settings import to_test_settings
from runner.loadgen.performance import LoadgenLatency
from runner.loadgen.run import run_loadgen
from runner.loadgen.settings import LoadgenSettings
from runner.loadgen.token_latencies import token_latencies_of
from runner.loadgen.token_run import run_token_loadgen
from tests.test_loadgen_logs import PERCENTILES, write

FIRST_S, STEP_S, TOKENS = 0.020, 0.005, 4  # a sample: first token at 20 ms, then 5 ms each
TOKEN_SERVER = {
    "scenario": "server",
    "server_qps": 8.0,
    "latency_bound_ms": 500.0,
    "token_latencies": True,
}
SHORT_SERVER = {**TOKEN_SERVER, "min_duration_s": 0.4, "min_queries": 3}


class StreamingSession:
    """generate(index) yields the sequence 100*index, 100*index + 1, ... of `tokens` tokens:
    the first after `first_s`, then one chunk per `step_s`, the last chunk holding
    `last_chunk` tokens at once (a multi-token step). `fail_on` = (call number, 1-based, and
    the chunks yielded on that call before it raises)."""

    def __init__(
        self,
        first_s: float = FIRST_S,
        step_s: float = STEP_S,
        tokens: int = TOKENS,
        last_chunk: int = 1,
        fail_on: tuple[int, int] | None = None,
    ) -> None:
        self.first_s, self.step_s, self.tokens = first_s, step_s, tokens
        self.last_chunk = last_chunk
        self.fail_on = fail_on
        self.calls = 0

    def sequence(self, index: int) -> np.ndarray:
        return np.arange(self.tokens, dtype=np.int32) + 100 * index

    def __call__(self, index: int) -> Iterator[np.ndarray]:
        self.calls += 1
        call = self.calls
        sequence = self.sequence(index)
        chunks = [*sequence[: -self.last_chunk, None], sequence[-self.last_chunk :]]
        for position, chunk in enumerate(chunks):
            if self.fail_on == (call, position):
                raise ValueError(f"decoder lost on sample {index}")
            time.sleep(self.first_s if position == 0 else self.step_s)
            yield chunk


def token_settings(**fields: object) -> LoadgenSettings:
    base = {"scenario": "single-stream", "min_duration_s": 0.1, "min_queries": 8}
    return LoadgenSettings(**{**base, "token_latencies": True, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"token_latencies": False, "ttft_ms": 50.0}, "a TTFT bound applies to token-latency"),
        (
            {"token_latencies": False, "ttft_ms": 5.0, "tpot_ms": 1.0},
            "a TTFT/TPOT bound applies to token-latency (LLM) runs only",
        ),
        ({"tpot_ms": 5.0}, "TTFT and TPOT bounds apply to the server scenario only, not single"),
        ({**TOKEN_SERVER, "ttft_ms": 50.0}, "needs both a TTFT and a TPOT bound"),
        ({**TOKEN_SERVER}, "needs both a TTFT and a TPOT bound"),
        ({**TOKEN_SERVER, "ttft_ms": 0.0, "tpot_ms": 5.0}, "TTFT bound 0.0 ms: must be a finite"),
        ({**TOKEN_SERVER, "ttft_ms": 9.0, "tpot_ms": float("nan")}, "TPOT bound nan ms: must"),
    ],
)
def test_bad_token_settings_are_one_line_before_anything_runs(fields: dict, message: str) -> None:
    with pytest.raises(AsicperfError) as raised:
        token_settings(**fields)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_token_bounds_reach_loadgen_in_ns_for_the_server_only() -> None:
    server = token_settings(**TOKEN_SERVER, ttft_ms=2000.0, tpot_ms=12.5)
    test = to_test_settings(server, batch_size=1, expected_batch_s=0.05, accuracy=False)
    assert test.use_token_latencies
    assert (test.ttft_latency, test.tpot_latency) == (2_000_000_000, 12_500_000)
    assert test.server_target_qps == 8.0  # sequences per second
    single = to_test_settings(token_settings(), batch_size=1, expected_batch_s=0.05, accuracy=False)
    assert single.use_token_latencies and single.ttft_latency == 100_000_000  # LoadGen's, unused
    plain = token_settings(token_latencies=False)
    assert not to_test_settings(
        plain, batch_size=1, expected_batch_s=0.05, accuracy=False
    ).use_token_latencies


def test_ttft_and_tpot_are_the_streams_known_delays(tmp_path: Path) -> None:
    run = run_token_loadgen(token_settings(), StreamingSession(), sample_count=3, log_dir=tmp_path)
    tokens, performance = run.tokens, run.loadgen.performance
    assert tokens is not None and performance is not None
    assert tokens.ttft_ms is not None and tokens.tpot_ms is not None
    assert 20 <= tokens.ttft_ms.p50 < 23 and tokens.ttft_ms.min >= 20
    assert 5 <= tokens.tpot_ms.p50 < 6 and tokens.tpot_ms.min >= 5
    assert 35 <= performance.latency_ms.p50 < 40  # the whole sequence: 20 + 3 x 5 ms
    seconds_per_sequence = performance.latency_ms.mean / 1e3
    assert tokens.tokens_per_s == pytest.approx(TOKENS / seconds_per_sequence, rel=0.1)
    assert (tokens.ttft_bound_ms, tokens.tpot_bound_ms) == (None, None)  # judged in Server only
    assert performance.early_stopping_latency_ms is None  # LoadGen's is of TTFT or TPOT
    assert run.loadgen.errors == () and run.loadgen.batch_size == 1


class BatchStream(StreamingSession):
    """The same pace for a static batch of 3 sequences: each chunk is [3, 1]."""

    def __call__(self, index: int) -> Iterator[np.ndarray]:
        for chunk in super().__call__(index):
            yield np.repeat(chunk.reshape(1, -1), 3, axis=0)


def test_a_batch_streams_tpot_is_each_sequences_pace(tmp_path: Path) -> None:
    """A static batch's step yields one token per sequence: LoadGen counts tokens per
    sequence, so TPOT stays the step time, not the step time over the batch."""
    run = run_token_loadgen(token_settings(), BatchStream(), sample_count=3, log_dir=tmp_path)
    assert run.tokens is not None and run.tokens.tpot_ms is not None
    assert 5 <= run.tokens.tpot_ms.p50 < 6


def test_a_ttft_bound_tighter_than_the_stream_is_invalid_in_loadgens_words(tmp_path: Path) -> None:
    settings = token_settings(**SHORT_SERVER, ttft_ms=10.0, tpot_ms=50.0)
    run = run_token_loadgen(settings, StreamingSession(), sample_count=3, log_dir=tmp_path)
    performance, tokens = run.loadgen.performance, run.tokens
    assert performance is not None and tokens is not None and not performance.valid
    assert (tokens.ttft_bound_ms, tokens.tpot_bound_ms) == (10.0, 50.0)
    assert tokens.ttft_ms is not None and tokens.ttft_ms.min >= FIRST_S * 1e3
    reasons = performance.invalid_reasons
    assert reasons[0] == (
        "performance constraints not satisfied: p99 TTFT or TPOT over its bound "
        "(TTFT 10 ms, TPOT 50 ms)"
    )
    recommendation = "LoadGen recommends: TTFT constrain not met: Reduce target QPS"
    assert any(reason.startswith(recommendation) for reason in reasons)
    assert not any("TPOT constrain" in reason for reason in reasons)


def test_bounds_the_stream_meets_leave_only_loadgens_other_checks(tmp_path: Path) -> None:
    settings = token_settings(**SHORT_SERVER, ttft_ms=400.0, tpot_ms=50.0)
    run = run_token_loadgen(settings, StreamingSession(), sample_count=3, log_dir=tmp_path)
    performance = run.loadgen.performance
    assert performance is not None
    assert not any("constrain" in reason for reason in performance.invalid_reasons)
    # a few queries cannot satisfy Server's early stopping, which LoadGen checks on TPOT
    assert any(point.startswith("TPOT: Run unsuccessful") for point in performance.early_stopping)


def test_the_accuracy_log_holds_each_sequence_its_first_token_and_count(tmp_path: Path) -> None:
    session = StreamingSession(first_s=0.0, step_s=0.0, tokens=3, last_chunk=2)
    run = run_token_loadgen(
        token_settings(), session, sample_count=4, log_dir=tmp_path, accuracy=True
    )
    assert run.tokens is None and run.loadgen.errors == ()
    entries = json.loads(run.loadgen.files.accuracy.read_text())
    assert sorted(entry["qsl_idx"] for entry in entries) == [0, 1, 2, 3]
    for entry in entries:
        sequence = session.sequence(entry["qsl_idx"])
        assert bytes.fromhex(entry["data"]) == sequence.tobytes()
        assert bytes.fromhex(entry["token_data"]) == sequence[:1].tobytes()
        assert entry["token_count"] == 3


def test_offline_counts_tokens_without_first_token_latencies(tmp_path: Path) -> None:
    session = StreamingSession(first_s=0.001, step_s=0.0)
    settings = token_settings(scenario="offline", min_duration_s=0.05)
    run = run_token_loadgen(settings, session, sample_count=2, log_dir=tmp_path)
    assert run.tokens is not None and (run.tokens.ttft_ms, run.tokens.tpot_ms) == (None, None)
    assert run.loadgen.performance is not None and run.loadgen.performance.valid
    samples_per_s = run.loadgen.performance.samples_per_s
    # both are LoadGen's counts over the same duration, logged to 6 significant digits
    assert run.tokens.tokens_per_s == pytest.approx(samples_per_s * TOKENS, rel=1e-4)


@pytest.mark.parametrize("chunks_before_failure", [0, 2])
def test_a_stream_that_fails_ends_the_run_with_its_error(
    chunks_before_failure: int, tmp_path: Path
) -> None:
    # calls 1-3 are the warm-up: the 5th is the second sample under LoadGen
    session = StreamingSession(first_s=0.001, step_s=0.0, fail_on=(5, chunks_before_failure))
    with pytest.raises(AsicperfError) as raised:
        run_token_loadgen(token_settings(), session, sample_count=3, log_dir=tmp_path)
    message = r"batch (\d) under LoadGen failed: ValueError: decoder lost on sample \1"
    assert re.fullmatch(message, str(raised.value))
    # LoadGen had every sample's first token before its completion (else it reads a latency
    # it never recorded, and crashes): it complains of the failed samples' token counts only
    errors = read_detail_log(tmp_path / "mlperf_log_detail.txt").errors
    assert any("n_tokens argument missing" in error for error in errors)
    assert not any("first token" in error for error in errors)


def test_a_session_of_whole_outputs_cannot_time_tokens(tmp_path: Path) -> None:
    with pytest.raises(AsicperfError, match="token latencies need a token-streaming session"):
        run_loadgen(
            token_settings(), lambda index: [], batch_count=1, batch_size=1, log_dir=tmp_path
        )
    plain = token_settings(token_latencies=False)
    with pytest.raises(AsicperfError, match="a token-streaming run needs token latencies on"):
        run_token_loadgen(plain, StreamingSession(), sample_count=1, log_dir=tmp_path)


def server_token_log(**changes: object) -> dict[str, object]:
    """A token Server run's entries, as LoadGen 6.0 writes them: TTFT 20-25.5 ms, TPOT 5-5.5."""
    values: dict[str, object] = {
        "requested_use_token_latencies": True,
        "requested_server_ttft_latency": 10_000_000,
        "requested_server_tpot_latency": 50_000_000,
        "effective_scenario": "Server",
        "result_first_token_min_latency_ns": 20_000_000,
        "result_first_token_max_latency_ns": 25_500_000,
        "result_first_token_mean_latency_ns": 21_000_000,
        "result_time_to_output_token_min": 5_000_000,
        "result_time_to_output_token_max": 5_500_000,
        "result_time_to_output_token_mean": 5_100_000,
        "result_completed_tokens_per_second": 43.25,
        "result_token_throughput": 1.2e-07,
        **{
            f"result_first_token_{p}_percentile_latency_ns": 20_000_000 + i * 1_000_000
            for i, p in enumerate(PERCENTILES)
        },
        **{
            f"result_time_per_output_token_{p}_percentile_ns": 5_000_000 + i * 100_000
            for i, p in enumerate(PERCENTILES)
        },
    }
    values.update(changes)
    return values


def test_token_figures_read_from_the_detail_log_in_ms(tmp_path: Path) -> None:
    tokens = token_latencies_of(read_detail_log(write(tmp_path, server_token_log())))
    assert tokens.ttft_ms == LoadgenLatency(
        mean=21.0, min=20.0, max=25.5, p50=20.0, p90=21.0, p95=22.0, p97=23.0, p99=24.0, p999=25.0
    )
    assert tokens.tpot_ms == LoadgenLatency(
        mean=5.1, min=5.0, max=5.5, p50=5.0, p90=5.1, p95=5.2, p97=5.3, p99=5.4, p999=5.5
    )
    assert (tokens.tokens_per_s, tokens.ttft_bound_ms, tokens.tpot_bound_ms) == (43.25, 10, 50)


def test_a_log_without_token_figures_is_one_line_naming_it(tmp_path: Path) -> None:
    plain = write(tmp_path, {"effective_scenario": "SingleStream"})
    with pytest.raises(AsicperfError, match="LoadGen ran without token latencies"):
        token_latencies_of(read_detail_log(plain))
    missing = write(tmp_path, server_token_log(result_time_to_output_token_mean=None))
    with pytest.raises(AsicperfError) as raised:
        token_latencies_of(read_detail_log(missing))
    assert str(raised.value).startswith(f"{missing}: ")
