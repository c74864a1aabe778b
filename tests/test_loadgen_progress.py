"""Progress follows LoadGen's stopping rules: the lesser of the minimum duration and query
count, an Offline run's share of its one query, an accuracy run's share of the batches."""

from __future__ import annotations

from runner.loadgen.progress import RunCounts, progress_goal
from runner.loadgen.settings import LoadgenSettings


def counts(elapsed_s: float, queries: int, done: int = 0, issued: int = 1) -> RunCounts:
    return RunCounts(
        elapsed_s=elapsed_s, queries_done=queries, samples_done=done, samples_issued=issued
    )


def test_a_performance_run_is_as_far_as_the_lesser_of_its_minimums() -> None:
    settings = LoadgenSettings(scenario="single-stream", min_duration_s=2.0, min_queries=100)
    goal = progress_goal(settings, accuracy=False, batch_count=4)
    assert goal(counts(1.0, 80)) == 0.5  # time lags
    assert goal(counts(3.0, 25)) == 0.25  # queries lag
    assert goal(counts(5.0, 500)) == 1.0
    no_minimum_time = LoadgenSettings(
        scenario="server", min_duration_s=0.0, min_queries=10, server_qps=1.0, latency_bound_ms=1.0
    )
    assert progress_goal(no_minimum_time, accuracy=False, batch_count=4)(counts(0.0, 5)) == 0.5


def test_an_offline_run_is_its_one_querys_share_done() -> None:
    settings = LoadgenSettings(scenario="offline", min_duration_s=60.0, min_queries=1)
    goal = progress_goal(settings, accuracy=False, batch_count=4)
    assert goal(counts(1.0, 0, done=300, issued=1200)) == 0.25


def test_an_accuracy_run_is_its_share_of_the_batches() -> None:
    settings = LoadgenSettings(scenario="multi-stream", min_duration_s=60.0, min_queries=100)
    goal = progress_goal(settings, accuracy=True, batch_count=5)
    assert goal(counts(9.0, 0, done=2, issued=8)) == 0.4
    assert goal(counts(9.0, 1, done=8, issued=8)) == 1.0  # the padded query's repeats
