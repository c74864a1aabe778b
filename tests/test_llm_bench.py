"""`runner bench --level llm` on the small seeded decoder: a target of known delays gives known
TTFT, TPOT and token rates; the server scenario's verdict and goodput follow the bounds; runs
are written as they finish and `--resume` keeps them; the accuracy block against the
reference; and bad input refused in one line before any work."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import onnx
import pytest

from ir.errors import AsicperfError
from runner.cli import main
from runner.llm_bench.engine import LlmPlan, bench_llm
from runner.llm_bench.model_source import LlmModel
from runner.llm_bench.run_files import run_path
from runner.results.llm import LlmRun
from tests.fake_targets import DECODE_S, PREFILL_S
from tests.small_decoders import SMALL_DECODER, small_decoder
from zoo.llm_workload import LlmWorkload

pytest.importorskip("onnxruntime")

PACED = "fake_targets:PacedTarget"


class ByteTokenizer:
    """What the engine reads of a tokenizer, over the small decoder's 64-token vocabulary."""

    bos_id = 1
    add_bos = False

    def encode(self, text: str) -> list[int]:
        return [ord(character) % SMALL_DECODER.vocab_size for character in text]


class Recorded:
    """The engine's progress calls, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def compiling(self) -> None:
        self.calls.append(("compiling",))

    def timing(self, batch_size: int, prompt_len: int, fraction: float) -> None:
        pass

    def finished(self, run: LlmRun, resumed: bool) -> None:
        self.calls.append(("finished", run.batch_size, run.prompt_len, resumed))

    def scoring(self) -> None:
        self.calls.append(("scoring",))

    def anchoring(self) -> None:
        self.calls.append(("anchoring",))


@pytest.fixture(scope="module")
def decoder_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("llm") / "small.onnx"
    onnx.save(small_decoder(), path)
    return path


def plan_for(path: Path, **fields: object) -> LlmPlan:
    workload = LlmWorkload(
        name="small",
        model=str(path),
        scenario="single-stream",
        target=PACED,
        batch_sizes=(1, 2),
        prompt_lens=(8,),
        gen_len=4,
        min_duration_s=0.0,
        min_queries=3,
        perplexity_context=16,
        perplexity_chunks=2,
        greedy_tokens=4,
        greedy_prompt="abcdef",
        max_kl_mean=1e-6,
        min_same_top1=1.0,
    )
    model = LlmModel(path, path, ByteTokenizer(), SMALL_DECODER.context_length)  # type: ignore[arg-type]
    return LlmPlan(dataclasses.replace(workload, **fields), model, seed=0)


@pytest.fixture(scope="module")
def measured(decoder_path: Path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("result")
    progress = Recorded()
    return bench_llm(plan_for(decoder_path), folder, False, progress), folder, progress


def test_ttft_tpot_and_rates_are_the_targets_known_delays(measured) -> None:
    result, _, _ = measured
    assert [(run.batch_size, run.prompt_len, run.gen_len) for run in result.runs] == [
        (1, 8, 4),
        (2, 8, 4),
    ]
    for run in result.runs:
        b = run.batch_size
        assert run.ttft_ms is not None and run.tpot_ms is not None
        assert PREFILL_S * 1e3 <= run.ttft_ms.p50 < PREFILL_S * 1e3 + 8
        assert DECODE_S * 1e3 <= run.tpot_ms.p50 < DECODE_S * 1e3 + 4
        assert DECODE_S * 1e3 <= run.itl_ms.p50 < DECODE_S * 1e3 + 4
        # the session's own clock: batch x prompt over the prefill, batch over a decode step
        assert run.prefill_tokens_per_s == pytest.approx(b * 8 / PREFILL_S, rel=0.25)
        assert run.decode_tokens_per_s == pytest.approx(b / DECODE_S, rel=0.3)
        # LoadGen's tokens/s counts every sequence of the batch
        sequence_s = run.e2e_ms.mean / 1e3
        assert run.tokens_per_s == pytest.approx(b * 4 / sequence_s, rel=0.15)
        # 2 layers x key and value x 2 heads x 8 x 4 bytes per token, 8 + 4 tokens per sequence
        assert run.memory.kv_cache_bytes == b * 12 * 2 * 2 * 2 * 8 * 4
        assert run.memory.peak_rss_bytes is None or run.memory.peak_rss_bytes > 0
        assert run.samples >= 3 and not run.valid  # LoadGen wants 64 queries to early-stop
        assert "early stopping" in run.why


def test_the_result_says_what_ran_and_how_the_cache_grows(measured) -> None:
    result, folder, progress = measured
    assert result.target == PACED and result.scenario == "single-stream"
    assert result.kv_cache.startswith("concatenation")
    assert result.coverage.node_coverage == 1.0
    document = json.loads((folder / "result.json").read_text())
    assert document["kind"] == "llm" and document["schema"] == "asicperf.result/4"
    run = document["runs"][0]
    for field in ("batch_size", "prompt_len", "gen_len", "prefill_tokens_per_s"):
        assert field in run
    assert set(run["ttft_ms"]) >= {"mean", "p50", "p90", "p99"}
    assert progress.calls[0] == ("compiling",) and progress.calls[-1] == ("scoring",)


def test_accuracy_against_the_reference_on_the_same_tokens(measured) -> None:
    accuracy = measured[0].accuracy
    assert accuracy is not None
    # 2 chunks of 16 tokens, each scoring positions 9..15: 7 tokens a chunk
    assert (accuracy.perplexity.chunks, accuracy.perplexity.tokens_scored) == (2, 14)
    assert accuracy.tokens_compared == 14
    assert accuracy.perplexity.value == pytest.approx(accuracy.reference_perplexity, rel=1e-5)
    assert accuracy.kl_divergence.max < 1e-6 and accuracy.same_top1 == 1.0
    assert accuracy.first_difference is None and accuracy.greedy_tokens == 4
    assert accuracy.passed is True and "KL mean" in accuracy.why


def test_resume_keeps_finished_runs_and_refuses_another_runs(measured, decoder_path) -> None:
    result, folder, _ = measured
    first = run_path(folder, 1, 8).read_text()
    progress = Recorded()
    again = bench_llm(plan_for(decoder_path), folder, True, progress)
    assert ("finished", 1, 8, True) in progress.calls and ("finished", 2, 8, True) in progress.calls
    assert run_path(folder, 1, 8).read_text() == first
    assert again.runs == result.runs
    with pytest.raises(AsicperfError, match=r"--resume: .*run_b1_p8.json is from another run"):
        bench_llm(plan_for(decoder_path, gen_len=5), folder, True, Recorded())


def _unscored(plan: LlmPlan) -> LlmPlan:
    return dataclasses.replace(plan, accuracy=False)


def test_the_server_verdict_and_goodput_follow_the_bounds(decoder_path, tmp_path) -> None:
    server = {
        "scenario": "server",
        "batch_sizes": (1,),
        "server_rate": 5.0,
        "min_duration_s": 0.5,
        "min_queries": 3,
    }
    loose = plan_for(decoder_path, **server, ttft_bound_ms=500.0, tpot_bound_ms=100.0)
    result = bench_llm(
        dataclasses.replace(loose, accuracy=False), tmp_path / "a", False, Recorded()
    )
    (run,) = result.runs
    assert run.constraints is not None and run.constraints.ttft_ms == 500.0
    assert run.goodput is not None and run.goodput.met == run.goodput.requests == run.samples
    tight = plan_for(decoder_path, **server, ttft_bound_ms=5.0, tpot_bound_ms=100.0)
    result = bench_llm(
        dataclasses.replace(tight, accuracy=False), tmp_path / "b", False, Recorded()
    )
    (run,) = result.runs
    assert not run.valid and "TTFT" in run.why
    assert run.goodput is not None and run.goodput.met == 0


def test_a_prompt_past_the_context_is_refused_before_any_work(decoder_path, tmp_path) -> None:
    plan = plan_for(decoder_path, prompt_lens=(120,), gen_len=16)
    with pytest.raises(AsicperfError, match=r"prompt 120 \+ 16 generated = 136 tokens: longer "):
        bench_llm(plan, tmp_path, False, Recorded())
    assert not any(tmp_path.iterdir())


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_any_work(
    decoder_path, tmp_path
) -> None:
    """Estimated before anything is allocated: a billion sequences' logits alone are 2 TB."""
    plan = plan_for(decoder_path, batch_sizes=(1_000_000_000,))
    message = r"batch 1000000000, 8\+4 tokens: needs at least [\d,.]+ GiB"
    with pytest.raises(AsicperfError, match=message):
        bench_llm(plan, tmp_path, False, Recorded())
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--gen-len", "0"], "--gen-len"),
        (["--gguf", "missing.gguf"], "--gguf missing.gguf: no such file"),
        (["--latency-bound", "5"], "--latency-bound: not an option of --level llm"),
        (["--scenario", "multi-stream"], "multi-stream is not supported for LLM runs"),
    ],
)
def test_bad_options_are_one_line_errors(
    arguments: list[str], message: str, decoder_path, tmp_path, capsys
) -> None:
    command = ["bench", "--level", "llm", "--model", str(decoder_path), "--out", str(tmp_path)]
    assert main([*command, *arguments]) != 0
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error and "Traceback" not in error


def test_an_onnx_model_without_its_gguf_names_the_option(decoder_path, capsys) -> None:
    assert main(["bench", "--level", "llm", "--model", str(decoder_path)]) != 0
    assert "needs --gguf FILE" in capsys.readouterr().err
