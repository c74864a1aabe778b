"""LLM workload files: the shipped one loads with its exact values, every bad field is a
one-line error naming the file and the field, a scenario switch keeps only the settings that
scenario reads, and the model-level workloads do not see the LLM folder."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from ir.errors import AsicperfError
from tests.workload_files import load_error, replaced
from zoo.llm_workload import (
    DEFAULT_GREEDY_PROMPT,
    LLM_WORKLOAD_DIR,
    LlmWorkload,
    check_llm_field,
    default_llm_workload,
    llm_overrides,
    llm_workload_for,
    load_llm_workload,
    shipped_llm_workloads,
)
from zoo.workload import WORKLOAD_DIR, default_workload, load_workload, shipped_workloads

_ROOT = Path(__file__).resolve().parent.parent

_VALID = """\
name = "mine"
model = "smollm2-135m"
scenario = "offline"
"""

_SHIPPED = LlmWorkload(
    name="smollm2-135m",
    model="smollm2-135m",
    scenario="single-stream",
    target="onnxruntime",
    target_options={},
    pipeline="",
    batch_sizes=(1, 4),
    prompt_lens=(128, 512),
    gen_len=128,
    min_duration_s=0.0,
    min_queries=3,
    server_rate=0.1,
    ttft_bound_ms=4000.0,
    tpot_bound_ms=100.0,
    latency_percentile=None,
    perplexity_context=512,
    perplexity_chunks=4,
    greedy_tokens=32,
    greedy_prompt="Python is an interpreted, interactive, object-oriented programming language. It",
    max_kl_mean=0.01,
    min_same_top1=0.98,
    max_perplexity_ratio=1.02,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "w.toml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> str:
    return load_error(load_llm_workload, _write(tmp_path, text))


def _replace(field: str, value: str) -> str:
    return replaced(_VALID, field, value)


def test_the_shipped_workload_loads_with_its_values() -> None:
    assert sorted(path.name for path in LLM_WORKLOAD_DIR.glob("*.toml")) == ["smollm2-135m.toml"]
    assert shipped_llm_workloads() == {"smollm2-135m": _SHIPPED}
    assert llm_workload_for("smollm2-135m") == _SHIPPED
    assert default_llm_workload("smollm2-135m") == _SHIPPED
    assert _SHIPPED.greedy_prompt != DEFAULT_GREEDY_PROMPT  # read from the file, not defaulted


def test_a_file_with_only_the_required_fields_gets_every_default(tmp_path: Path) -> None:
    assert load_llm_workload(_write(tmp_path, _VALID)) == LlmWorkload(
        name="mine", model="smollm2-135m", scenario="offline"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_replace("gen_len", "0"), "'gen_len' must be a positive integer, got 0"),
        (
            _replace("prompt_lens", "[]"),
            "'prompt_lens' must be a non-empty list of positive integers, got []",
        ),
        (
            _replace("batch_sizes", "[1, 0]"),
            "'batch_sizes' must be a non-empty list of positive integers, got [1, 0]",
        ),
        (
            _replace("scenario", '"multi-stream"'),
            "'scenario' multi-stream is not supported for LLM runs: LoadGen's multi-stream "
            "figure is the latency of a query of several samples to its last one, not a "
            "per-token latency (TTFT, TPOT), and MLPerf's LLM benchmarks define no "
            "multi-stream scenario",
        ),
        (
            _replace("scenario", '"batch"'),
            "'scenario' must be one of single-stream, offline, server, got 'batch'",
        ),
        (
            _replace("scenario", '"server"') + "ttft_bound_ms = 1\ntpot_bound_ms = 1\n",
            "'server_rate' is needed by the server scenario",
        ),
        (
            _replace("scenario", '"server"') + "server_rate = 1\ntpot_bound_ms = 1\n",
            "'ttft_bound_ms' is needed by the server scenario",
        ),
        (
            _replace("scenario", '"server"') + "server_rate = 1\nttft_bound_ms = 1\n",
            "'tpot_bound_ms' is needed by the server scenario",
        ),
        (
            _replace("perplexity_chunks", "1"),
            "'perplexity_chunks' must be an integer of at least 2 (llama.cpp's perplexity "
            "needs at least two chunks), got 1",
        ),
        (
            _replace("perplexity_context", "2"),
            "'perplexity_context' must be an integer of at least 3 (the second half of each "
            "chunk must score a token), got 2",
        ),
        (_replace("min_same_top1", "1.5"), "'min_same_top1' must be in [0, 1], got 1.5"),
        (_replace("max_kl_mean", "-0.1"), "'max_kl_mean' must be 0 or more, got -0.1"),
        (
            _replace("max_perplexity_ratio", "0.99"),
            "'max_perplexity_ratio' must be at least 1, got 0.99",
        ),
        (_replace("server_rate", "0"), "'server_rate' must be positive, got 0"),
        (_replace("tpot_bound_ms", "-5"), "'tpot_bound_ms' must be positive, got -5"),
        (
            _replace("latency_percentile", "1"),
            "'latency_percentile' must be in (0, 1) (0.9 is p90), got 1",
        ),
        (_replace("min_duration_s", "-1"), "'min_duration_s' must be 0 or more, got -1"),
        (_replace("min_queries", "0"), "'min_queries' must be a positive integer, got 0"),
        (
            _replace("greedy_prompt", '" "'),
            "'greedy_prompt' must not be empty: greedy generation needs a prompt",
        ),
        (
            _replace("model", '"resnet50"'),
            "'model' names zoo model 'resnet50', which does not generate text "
            "(`runner bench --level model` measures it)",
        ),
        (
            _replace("model", '"smollm3"'),
            "'model' must be a zoo text-generation model (smollm2-135m) or an .onnx path, "
            "got 'smollm3'",
        ),
        (_VALID.replace('name = "mine"\n', ""), "'name' is missing"),
        (_VALID.replace('scenario = "offline"\n', ""), "'scenario' is missing"),
    ],
)
def test_a_bad_field_is_one_line_naming_the_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    assert _error(tmp_path, text) == message


def test_an_unknown_key_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    message = _error(tmp_path, _VALID + "gen_lens = 4\n")
    assert message.startswith("'gen_lens' is not an LLM workload field (known: name, model, ")
    assert message.endswith(", max_perplexity_ratio)")


def test_a_model_path_is_taken_as_written(tmp_path: Path) -> None:
    text = _replace("model", '"decoders/mine.onnx"')
    assert load_llm_workload(_write(tmp_path, text)).model == "decoders/mine.onnx"


def test_in_scenario_keeps_each_setting_only_where_it_is_read(tmp_path: Path) -> None:
    """A file of another scenario may carry the server's settings: they wait there for a
    switch to the server scenario, and every other scenario drops them."""
    server_settings = "server_rate = 0.5\nttft_bound_ms = 900\ntpot_bound_ms = 90\n"
    offline = load_llm_workload(_write(tmp_path, _VALID + server_settings))
    assert (offline.server_rate, offline.ttft_bound_ms, offline.tpot_bound_ms) == (0.5, 900, 90)
    workload = LlmWorkload(
        name="w",
        model="m.onnx",
        scenario="server",
        server_rate=0.5,
        ttft_bound_ms=900.0,
        tpot_bound_ms=90.0,
        latency_percentile=0.95,
    )
    server = offline.in_scenario("server")
    assert server.scenario == "server"
    assert (server.server_rate, server.ttft_bound_ms, server.tpot_bound_ms) == (0.5, 900, 90)
    single = workload.in_scenario("single-stream")
    assert (single.scenario, single.latency_percentile) == ("single-stream", 0.95)
    assert (single.server_rate, single.ttft_bound_ms, single.tpot_bound_ms) == (None,) * 3
    off = workload.in_scenario("offline")
    assert (off.server_rate, off.ttft_bound_ms, off.tpot_bound_ms, off.latency_percentile) == (
        (None,) * 4
    )
    assert off.gen_len == workload.gen_len and off.batch_sizes == workload.batch_sizes


def test_overrides_are_checked_as_fields_naming_the_option() -> None:
    assert check_llm_field("prompt_lens", [128, 512], "--prompt-len") == (128, 512)
    assert check_llm_field("gen_len", 64, "--gen-len") == 64
    assert check_llm_field("server_rate", 2, "--rate") == 2.0
    assert check_llm_field("batch_sizes", [1, 4], "--batch") == (1, 4)
    refusals = [
        ("gen_len", 0, "--gen-len", "--gen-len: must be a positive integer, got 0"),
        ("server_rate", 0.0, "--rate", "--rate: must be positive, got 0.0"),
        (
            "prompt_lens",
            [128, -1],
            "--prompt-len",
            "--prompt-len: must be a non-empty list of positive integers, got [128, -1]",
        ),
        (
            "batch_sizes",
            [],
            "--batch",
            "--batch: must be a non-empty list of positive integers, got []",
        ),
    ]
    for key, raw, flag, message in refusals:
        with pytest.raises(AsicperfError) as caught:
            check_llm_field(key, raw, flag)
        assert str(caught.value) == message


def test_multi_stream_is_refused_when_switching_too() -> None:
    with pytest.raises(AsicperfError) as caught:
        _SHIPPED.in_scenario("multi-stream")
    assert str(caught.value).startswith(
        "scenario: multi-stream is not supported for LLM runs: LoadGen's multi-stream figure "
    )


def test_command_line_options_override_the_workload_as_it_runs() -> None:
    given = {
        "batch": "4,1,4",
        "prompt_len": "512",
        "gen_len": "16",
        "min_duration": 0.5,
        "min_queries": 2,
        "target": "onnxruntime{threads=2}",
    }
    assert llm_overrides(_SHIPPED, given) == dataclasses.replace(
        _SHIPPED,
        batch_sizes=(1, 4),
        prompt_lens=(512,),
        gen_len=16,
        min_duration_s=0.5,
        min_queries=2,
        target_options={"threads": "2"},
        server_rate=None,  # a single-stream run drops the server's settings
        ttft_bound_ms=None,
        tpot_bound_ms=None,
    )
    server = llm_overrides(_SHIPPED.in_scenario("server"), {"rate": "0.5"})
    assert (server.server_rate, server.ttft_bound_ms, server.tpot_bound_ms) == (0.5, 4000, 100)


_BARE_SERVER = LlmWorkload(name="u", model="m.onnx", scenario="server")


@pytest.mark.parametrize(
    ("base", "given", "message"),
    [
        (_SHIPPED, {"gen_len": "0"}, "--gen-len: must be a positive integer, got 0"),
        (_SHIPPED, {"gen_len": "many"}, "--gen-len: must be an integer, got 'many'"),
        (
            _SHIPPED,
            {"prompt_len": "128,x"},
            "--prompt-len: must be integers separated by commas, like 128,512, got '128,x'",
        ),
        (
            _SHIPPED,
            {"batch": "0,4"},
            "--batch: must be a non-empty list of positive integers, got [0, 4]",
        ),
        (_SHIPPED, {"rate": "0.5"}, "--rate: applies to server runs only, not single-stream"),
        (
            _SHIPPED.in_scenario("offline"),
            {"latency_percentile": 0.9},
            "--latency-percentile: applies to single-stream and server runs only, not offline",
        ),
        (
            _BARE_SERVER,
            {"ttft_bound": "900", "tpot_bound": "90"},
            "the server scenario needs --rate: workload 'u' sets no server_rate",
        ),
        (
            _BARE_SERVER,
            {"rate": "1", "ttft_bound": "900"},
            "the server scenario needs --tpot-bound: workload 'u' sets no tpot_bound_ms",
        ),
        (_BARE_SERVER, {"rate": "nan"}, "--rate: must be finite, got nan"),
        (
            _SHIPPED,
            {"target": "onnxruntime{threads}"},
            "--target 'onnxruntime{threads}': option 'threads' is not key=value",
        ),
        (
            _SHIPPED,
            {"model": "resnet50"},
            "--model: names zoo model 'resnet50', which does not generate text "
            "(`runner bench --level model` measures it)",
        ),
    ],
)
def test_a_bad_option_is_one_line_naming_it(
    base: LlmWorkload, given: dict[str, object], message: str
) -> None:
    with pytest.raises(AsicperfError) as caught:
        llm_overrides(base, given)
    assert str(caught.value) == message


def test_default_workload_for_a_user_decoder() -> None:
    workload = default_llm_workload("models/my_decoder.onnx")
    assert workload == LlmWorkload(
        name="my_decoder", model="models/my_decoder.onnx", scenario="single-stream"
    )
    assert (workload.batch_sizes, workload.prompt_lens, workload.gen_len) == ((1,), (128,), 128)
    assert (workload.min_duration_s, workload.min_queries) == (10.0, 4)
    assert (workload.perplexity_context, workload.perplexity_chunks) == (512, 4)
    assert (workload.greedy_tokens, workload.greedy_prompt) == (32, DEFAULT_GREEDY_PROMPT)
    assert (workload.max_kl_mean, workload.min_same_top1, workload.max_perplexity_ratio) == (
        None,
        None,
        None,
    )
    with pytest.raises(AsicperfError) as caught:
        default_llm_workload("resnet50")
    assert str(caught.value) == (
        "'resnet50' does not generate text: `runner bench --level model` measures it"
    )


def test_workload_by_name_or_path(tmp_path: Path) -> None:
    path = _write(tmp_path, _VALID)
    assert llm_workload_for(str(path)).name == "mine"
    with pytest.raises(AsicperfError) as caught:
        llm_workload_for("nope")
    assert str(caught.value) == (
        "'nope': no such file and no shipped LLM workload of that name (known: smollm2-135m)"
    )


def test_json_and_target_spec() -> None:
    data = _SHIPPED.to_json()
    assert (data["batch_sizes"], data["prompt_lens"], data["target_options"]) == (
        [1, 4],
        [128, 512],
        {},
    )
    assert LlmWorkload(**{**data, "batch_sizes": (1, 4), "prompt_lens": (128, 512)}) == _SHIPPED
    assert _SHIPPED.target_spec == "onnxruntime"
    threaded = LlmWorkload(
        name="t", model="m.onnx", scenario="offline", target_options={"b": "2", "a": "1"}
    )
    assert threaded.target_spec == "onnxruntime{a=1 b=2}"


def test_model_level_workloads_do_not_read_the_llm_folder() -> None:
    assert LLM_WORKLOAD_DIR.parent == WORKLOAD_DIR
    assert not any(workload.model == "smollm2-135m" for workload in shipped_workloads().values())
    with pytest.raises(AsicperfError, match=r"measure it with `runner bench --level llm`$"):
        default_workload("smollm2-135m")
    with pytest.raises(AsicperfError, match=r"'prompt_lens' is not a workload field"):
        load_workload(LLM_WORKLOAD_DIR / "smollm2-135m.toml")


def test_the_llm_workloads_ship_in_the_package() -> None:
    """setuptools packs only the package data patterns: a file under llm/ outside them would be
    missing from an installed asicperf."""
    pyproject = tomllib.loads((_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["zoo.workloads"]
    packed = {path for pattern in patterns for path in WORKLOAD_DIR.glob(pattern)}
    shipped = set(LLM_WORKLOAD_DIR.glob("*.toml"))
    assert shipped and shipped <= packed
