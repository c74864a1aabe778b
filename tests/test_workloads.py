"""Workload files: every shipped one loads and names a zoo model, and every bad field is a
one-line error naming the file and the field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import get_args

import pytest

from ir.errors import AsicperfError
from runner.bench.engine import loadgen_settings
from runner.loadgen.settings import SCENARIOS
from tests.workload_files import load_error, replaced
from zoo.catalog import ZOO
from zoo.model import TEXT_GENERATION
from zoo.workload import (
    WORKLOAD_DIR,
    Scenario,
    Workload,
    default_workload,
    load_workload,
    shipped_workloads,
    workload_for,
)

_VALID = """\
name = "mine"
model = "digits-cnn"
batch_sizes = [1, 32]
scenario = "offline"
accuracy_metric = "top-1"
accuracy_threshold = 0.95
"""


def test_every_shipped_workload_loads_and_names_a_zoo_model() -> None:
    for path in sorted(WORKLOAD_DIR.glob("*.toml")):
        workload = load_workload(path)
        assert workload.name == path.stem
        assert workload.model in ZOO
        assert workload.to_json()["batch_sizes"] == list(workload.batch_sizes)


def test_every_zoo_model_has_a_shipped_workload() -> None:
    """Every model but the text generators, whose figures are per prompt and generation length:
    for them the default is refused in one line rather than timing one token."""
    generators = {name for name, entry in ZOO.items() if entry.task == TEXT_GENERATION}
    assert generators == {"smollm2-135m"}
    shipped = {workload.model for workload in shipped_workloads().values()}
    assert shipped == set(ZOO) - generators
    with pytest.raises(AsicperfError, match=r"^'smollm2-135m' generates text: it is measured"):
        default_workload("smollm2-135m")
    assert default_workload("digits-cnn").accuracy_metric == "top-1"
    assert default_workload("all-minilm-l6-v2").accuracy_metric == "embedding-cosine"


def test_workload_by_name_or_path(tmp_path: Path) -> None:
    assert workload_for("resnet50").model == "resnet50"
    path = tmp_path / "mine.toml"
    path.write_text(_VALID)
    assert workload_for(str(path)) == Workload(
        name="mine",
        model="digits-cnn",
        batch_sizes=(1, 32),
        scenario="offline",
        accuracy_metric="top-1",
        accuracy_threshold=0.95,
    )
    with pytest.raises(AsicperfError, match=r"^'nope': no such file and no shipped workload"):
        workload_for("nope")


def test_default_workload_for_a_user_model() -> None:
    workload = default_workload("models/my_net.onnx")
    assert workload.name == "my_net"
    assert workload.batch_sizes == (1,)
    assert workload.scenario == "single-stream"
    assert (workload.accuracy_metric, workload.accuracy_threshold) == ("output-drift", 0.999)


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "w.toml"
    path.write_text(text)
    return load_error(load_workload, path)


def _replace(field: str, value: str) -> str:
    return replaced(_VALID, field, value)


def _toml_value(text: str) -> object:
    return tomllib.loads(f"v = {text}")["v"]


def _load(tmp_path: Path, text: str) -> Workload:
    path = tmp_path / "ok.toml"
    path.write_text(text)
    return load_workload(path)


def test_unknown_key(tmp_path: Path) -> None:
    message = _error(tmp_path, _VALID + "batch = 3\n")
    assert message.startswith("'batch' is not a workload field (known: name, model, batch_sizes")


def test_missing_field(tmp_path: Path) -> None:
    text = _VALID.replace('scenario = "offline"\n', "")
    assert _error(tmp_path, text) == "'scenario' is missing"


def test_not_toml(tmp_path: Path) -> None:
    assert _error(tmp_path, "name = ").startswith("not valid TOML: ")


def test_wrong_type(tmp_path: Path) -> None:
    assert _error(tmp_path, _replace("name", "3")) == "'name' must be a string, got 3"
    assert (
        _error(tmp_path, _replace("min_duration_s", '"2"'))
        == "'min_duration_s' must be a number, got '2'"
    )
    assert _error(tmp_path, _replace("min_duration_s", "inf")) == (
        "'min_duration_s' must be finite, got inf"
    )
    assert (
        _error(tmp_path, _replace("min_queries", "true"))
        == "'min_queries' must be a positive integer, got True"
    )
    assert (
        _error(tmp_path, _VALID + "[target_options]\nthreads = 4\n")
        == "'target_options' must be a table of strings, got {'threads': 4}"
    )


def test_bad_enum(tmp_path: Path) -> None:
    assert (
        _error(tmp_path, _replace("scenario", '"batch"'))
        == "'scenario' must be one of single-stream, multi-stream, server, offline, got 'batch'"
    )
    assert (
        _error(tmp_path, _replace("accuracy_metric", '"top-5"'))
        == "'accuracy_metric' must be one of top-1, embedding-cosine, output-drift, got 'top-5'"
    )


def test_batch_sizes_positive(tmp_path: Path) -> None:
    for value in ("[1, 0]", "[]", "8", "[1.5]"):
        assert _error(tmp_path, _replace("batch_sizes", value)) == (
            f"'batch_sizes' must be a non-empty list of positive integers, "
            f"got {_toml_value(value)!r}"
        )


def test_workload_batch_size_over_the_largest_dim_is_refused(tmp_path: Path) -> None:
    assert _error(tmp_path, _replace("batch_sizes", f"[1, {2**40 + 1}]")) == (
        f"'batch_sizes' must be at most {2**40} (the largest dim), got {2**40 + 1}"
    )


def test_fraction_range(tmp_path: Path) -> None:
    for value in ("0", "1.5", "-0.1"):
        assert (
            _error(tmp_path, _replace("dataset_fraction", value))
            == f"'dataset_fraction' must be in (0, 1], got {_toml_value(value)!r}"
        )
    assert _load(tmp_path, _replace("dataset_fraction", "1")).dataset_fraction == 1


def test_threshold_range(tmp_path: Path) -> None:
    assert (
        _error(tmp_path, _replace("accuracy_threshold", "95"))
        == "'accuracy_threshold' must be in [0, 1], got 95"
    )


def test_positive_numbers(tmp_path: Path) -> None:
    assert (
        _error(tmp_path, _replace("latency_bound_ms", "0"))
        == "'latency_bound_ms' must be positive, got 0"
    )


def test_unknown_zoo_model(tmp_path: Path) -> None:
    message = _error(tmp_path, _replace("model", '"resnet51"'))
    assert message.startswith("'model' names no zoo model: 'resnet51' (known: albert-base, ")


def test_bad_pipeline(tmp_path: Path) -> None:
    message = _error(tmp_path, _replace("pipeline", '"O1,no-such-pass"'))
    assert message.startswith(
        "'pipeline' is not a valid pipeline: unknown pass or pipeline 'no-such-pass'"
    )


def test_server_scenario_needs_its_bounds(tmp_path: Path) -> None:
    text = _replace("scenario", '"server"')
    assert _error(tmp_path, text) == "'latency_bound_ms' is needed by the server scenario"
    text += "latency_bound_ms = 10\n"
    assert _error(tmp_path, text) == "'server_qps' is needed by the server scenario"
    assert _load(tmp_path, text + "server_qps = 100\n").server_qps == 100.0


def test_the_scenarios_are_loadgens() -> None:
    assert get_args(Scenario) == SCENARIOS


def test_every_shipped_workload_is_a_run_loadgen_accepts_and_can_judge_valid() -> None:
    """LoadGen's early stopping at a Server run's p99 needs 459 queries with none over the
    bound; a workload asking for fewer could never be VALID."""
    for workload in shipped_workloads().values():
        settings = loadgen_settings(workload, seed=0)
        if workload.scenario == "server":
            assert settings.latency_percentile is None and workload.min_queries >= 459


def test_loadgen_fields(tmp_path: Path) -> None:
    multi = _replace("scenario", '"multi-stream"')
    workload = _load(tmp_path, multi + "latency_percentile = 0.9\nsamples_per_query = 2\n")
    assert (workload.latency_percentile, workload.samples_per_query) == (0.9, 2)
    for value in ("0", "1", "99"):
        assert _error(tmp_path, multi + f"latency_percentile = {value}\n") == (
            f"'latency_percentile' must be in (0, 1) (0.9 is p90), got {value}"
        )
    assert _error(tmp_path, multi + "samples_per_query = 0\n") == (
        "'samples_per_query' must be a positive integer, got 0"
    )


@pytest.mark.parametrize(
    ("field", "scenario"),
    [
        ("server_qps = 100", "offline"),
        ("samples_per_query = 4", "single-stream"),
        ("latency_percentile = 0.9", "offline"),
    ],
)
def test_a_field_of_another_scenario_is_refused(tmp_path: Path, field: str, scenario: str) -> None:
    text = _replace("scenario", f'"{scenario}"') + field + "\n"
    key = field.split(" =")[0]
    assert _error(tmp_path, text) == f"'{key}' does not apply to the {scenario} scenario"


def test_another_scenario_drops_the_settings_only_the_workloads_reads() -> None:
    server = Workload(
        name="s",
        model="m.onnx",
        batch_sizes=(1,),
        scenario="server",
        accuracy_metric="output-drift",
        accuracy_threshold=0.9,
        latency_bound_ms=10.0,
        server_qps=200.0,
        latency_percentile=0.95,
    )
    offline = server.in_scenario("offline")
    assert (offline.scenario, offline.server_qps, offline.latency_percentile) == (
        "offline",
        None,
        None,
    )
    assert offline.latency_bound_ms == 10.0  # the best batch's bound, in any scenario
    multi = server.in_scenario("multi-stream")
    assert (multi.server_qps, multi.latency_percentile) == (None, 0.95)
