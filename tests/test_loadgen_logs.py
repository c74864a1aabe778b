"""LoadGen's detail log read into a typed record: figures in ms, the verdict and LoadGen's
reasons, errors and warnings; keys it does not know are kept, a missing figure is one line
naming the file. The logs here are written line by line in LoadGen's format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ir.errors import AsicperfError
from runner.loadgen.detail_log import read_detail_log
from runner.loadgen.performance import LoadgenLatency, performance_of

PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")


def entry(key: str, value: object, *, error: bool = False, warning: bool = False) -> str:
    metadata = {"is_error": error, "is_warning": warning, "file": "results.cc", "line_no": 1}
    record = {"key": key, "value": value, "time_ms": 1.0, "metadata": metadata}
    return ":::MLLOG " + json.dumps(record)


def single_stream(**changes: object) -> dict[str, object]:
    """A SingleStream run's entries, 2 ms a query, VALID, with `changes` applied."""
    values: dict[str, object] = {
        "effective_scenario": "SingleStream",
        "effective_target_latency_percentile": 0.9,
        "effective_target_latency_ns": 0,
        "effective_min_duration_ms": 1000,
        "effective_min_query_count": 100,
        "result_validity": "VALID",
        "result_min_duration_met": True,
        "result_min_queries_met": True,
        "early_stopping_met": True,
        "early_stopping_result": " * Processed at least 64 queries (477).\n * Would discard 31",
        "result_query_count": 477,
        "result_qps_with_loadgen_overhead": 475.092,
        "early_stopping_latency_ss": 2156847,
        "early_stopping_latency_ms": 0,
        "result_min_latency_ns": 2070759,
        "result_max_latency_ns": 3003022,
        "result_mean_latency_ns": 2101082,
        **{
            f"result_{p}_percentile_latency_ns": 2_000_000 + i * 100_000
            for i, p in enumerate(PERCENTILES)
        },
    }
    values.update(changes)
    return {key: value for key, value in values.items() if value is not None}


def write(tmp_path: Path, values: dict[str, object], *extra_lines: str) -> Path:
    path = tmp_path / "mlperf_log_detail.txt"
    lines = [entry(key, value) for key, value in values.items()]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")
    return path


def test_a_valid_single_stream_log_reads_as_ms_and_loadgen_samples_per_second(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, single_stream(result_key_of_a_later_loadgen=[1, 2]))
    performance = performance_of(read_detail_log(path))
    assert performance.valid and performance.invalid_reasons == ()
    assert performance.latency_ms == LoadgenLatency(
        mean=2.101082, min=2.070759, max=3.003022,
        p50=2.0, p90=2.1, p95=2.2, p97=2.3, p99=2.4, p999=2.5,
    )  # fmt: skip
    assert performance.samples_per_s == 475.092
    assert performance.early_stopping_latency_ms == 2.156847
    assert performance.early_stopping == (
        "Processed at least 64 queries (477).",
        "Would discard 31",
    )
    assert (performance.query_count, performance.overlatency_query_count) == (477, None)


def test_multi_stream_figures_are_per_query(tmp_path: Path) -> None:
    per_query = {
        f"result_{p}_percentile_per_query_latency_ns": 8_000_000 + i
        for i, p in enumerate(PERCENTILES)
    }
    values = single_stream(
        effective_scenario="MultiStream",
        result_qps_with_loadgen_overhead=None,
        early_stopping_latency_ss=None,
        early_stopping_latency_ms=8_400_000,
        result_min_query_latency_ns=8_000_000,
        result_max_query_latency_ns=9_000_000,
        result_mean_query_latency_ns=8_300_000,
        **per_query,
    )
    performance = performance_of(read_detail_log(write(tmp_path, values)))
    assert performance.latency_ms.p50 == 8.0 and performance.latency_ms.p999 == 8.000005
    assert (performance.latency_ms.min, performance.latency_ms.max) == (8.0, 9.0)
    assert performance.samples_per_s is None
    assert performance.early_stopping_latency_ms == 8.4


def test_an_invalid_run_gives_each_failed_check_loadgens_advice_and_errors(
    tmp_path: Path,
) -> None:
    values = single_stream(
        result_validity="INVALID",
        result_min_duration_met=False,
        result_min_queries_met=False,
        early_stopping_met=False,
        early_stopping_result=" * Only processed 12 queries.\n * Need to process at least 64",
        result_query_count=12,
        result_invalid_reason="Decrease the expected latency so the loadgen pre-generates "
        "more queries. The test exited early, before enough queries were issued.",
    )
    path = write(
        tmp_path,
        values,
        entry("error_runtime", "Ending early: Ran out of generated queries.", error=True),
        entry("warning_generic_message", "CAS failed.", warning=True),
    )
    log = read_detail_log(path)
    assert log.errors == ("error_runtime: Ending early: Ran out of generated queries.",)
    assert log.warnings == ("warning_generic_message: CAS failed.",)
    performance = performance_of(log)
    assert not performance.valid
    assert performance.invalid_reasons == (
        "min duration not satisfied (min 1 s)",
        "min queries not satisfied (12 queries, min 100)",
        "early stopping not satisfied: Only processed 12 queries. Need to process at least 64.",
        "LoadGen recommends: Decrease the expected latency so the loadgen pre-generates more "
        "queries. The test exited early, before enough queries were issued.",
        "error_runtime: Ending early: Ran out of generated queries.",
    )


def test_a_missing_figure_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, single_stream(**{"result_90.00_percentile_latency_ns": None}))
    with pytest.raises(AsicperfError) as raised:
        performance_of(read_detail_log(path))
    expected = f"{path}: LoadGen's detail log has no 'result_90.00_percentile_latency_ns' entry"
    assert str(raised.value) == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"result_query_count": "477"}, "'result_query_count' is '477', expected an integer"),
        (
            {"result_validity": "INVALID", "result_min_duration_met": 1},
            "'result_min_duration_met' is 1, expected true or false",
        ),
        ({"result_validity": "MAYBE"}, "result_validity is 'MAYBE', not VALID or INVALID"),
        ({"effective_scenario": "Batch"}, "unknown LoadGen scenario 'Batch'"),
    ],
)
def test_a_figure_of_the_wrong_kind_is_one_line(
    changes: dict, message: str, tmp_path: Path
) -> None:
    path = write(tmp_path, single_stream(**changes))
    with pytest.raises(AsicperfError) as raised:
        performance_of(read_detail_log(path))
    assert str(raised.value) == f"{path}: {message}"


def test_a_broken_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, {"effective_scenario": "Offline"}, ":::MLLOG {truncated")
    with pytest.raises(AsicperfError, match=r"mlperf_log_detail.txt:2: a LoadGen log entry that"):
        read_detail_log(path)


def test_a_missing_log_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AsicperfError, match="cannot read LoadGen's detail log"):
        read_detail_log(tmp_path / "mlperf_log_detail.txt")
