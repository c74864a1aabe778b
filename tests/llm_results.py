"""Small LLM results built by hand, with round figures so a report test can name every number it
expects: by default two single-stream runs of 512-token prompts and 128 generated tokens, at
batch 1 (VALID) and batch 4 (INVALID), the accuracy on real text and a llama.cpp anchor."""

from __future__ import annotations

import dataclasses

from report_documents import CREATED, environment

from runner.results.document import Environment
from runner.results.llm import (
    AnchorRecord,
    Goodput,
    LlmAccuracy,
    LlmResult,
    LlmRun,
    MemoryRecord,
    PerplexityRecord,
    TokenConstraints,
)
from runner.results.model import (
    Coverage,
    KlDivergenceRecord,
    LatencyStats,
    LoadgenRecord,
    TargetInfoRecord,
)

MIB = 2**20
PROMPT, GEN = 512, 128
ACCURACY = LlmAccuracy(
    perplexity=PerplexityRecord(
        value=12.5,
        uncertainty=0.25,
        n_ctx=512,
        chunks=4,
        tokens_scored=1020,
        text="pydoc_data.topics",
    ),
    reference_perplexity=12.0,
    kl_divergence=KlDivergenceRecord(mean=0.0125, p99=0.05, max=0.5),
    same_top1=0.975,
    tokens_compared=1020,
    first_difference=17,
    greedy_tokens=64,
    reference_target="reference",
    passed=True,
    why="KL mean 0.0125 ≤ 0.05",
)
ANCHOR = AnchorRecord(
    runtime="llama.cpp 0.3.16",
    weights="Q4_1 GGUF",
    threads=2,
    prompt_tokens=512,
    gen_tokens=128,
    prefill_tokens_per_s=1600.0,
    decode_tokens_per_s=200.0,
)
SERVER_BOUNDS = TokenConstraints(ttft_ms=500.0, tpot_ms=50.0, percentile=0.99)


def stats(p50: float, p99: float) -> LatencyStats:
    """Latency figures whose mean and p90 sit between the p50 and the p99 given."""
    return LatencyStats(
        mean=(p50 + p99) / 2, p50=p50, p90=(p50 + p99) / 2, p99=p99, min=p50, max=p99
    )


def llm_run(
    batch_size: int,
    *,
    prompt_len: int = PROMPT,
    gen_len: int = GEN,
    ttft: tuple[float, float] | None = (20.0, 25.0),
    tpot: tuple[float, float] | None = (10.0, 12.5),
    prefill_tokens_per_s: float = 6400.0,
    decode_tokens_per_s: float = 100.0,
    valid: bool = True,
    goodput: Goodput | None = None,
) -> LlmRun:
    """A run whose TTFT and TPOT are (p50, p99) in ms (None: offline), with 300 MiB peak
    resident memory and 6 MiB of KV cache per sequence of the batch."""
    scenario = "server" if goodput is not None else "single-stream"
    loadgen = "Server" if goodput is not None else "SingleStream"
    return LlmRun(
        batch_size=batch_size,
        prompt_len=prompt_len,
        gen_len=gen_len,
        scenario=scenario,
        samples=64,
        duration_s=10.0,
        ttft_ms=None if ttft is None else stats(*ttft),
        tpot_ms=None if tpot is None else stats(*tpot),
        itl_ms=stats(9.0, 12.0),
        e2e_ms=stats(1300.0, 1600.0),
        prefill_ms=stats(18.0, 24.0),
        prefill_tokens_per_s=prefill_tokens_per_s,
        decode_tokens_per_s=decode_tokens_per_s,
        tokens_per_s=0.95 * decode_tokens_per_s,
        valid=valid,
        why="min duration met; 64 samples" if valid else "too few samples [64 < 100]",
        constraints=None if goodput is None else SERVER_BOUNDS,
        goodput=goodput,
        memory=MemoryRecord(
            peak_rss_bytes=300 * MIB, kv_cache_bytes=6 * MIB * batch_size, weights_bytes=540 * MIB
        ),
        loadgen=LoadgenRecord(
            scenario=loadgen,
            target_latency_percentile=0.99 if goodput is not None else 0.9,
            logs=(f"loadgen/batch-{batch_size}/mlperf_log_summary.txt",),
        ),
    )


RUNS = (
    llm_run(1),
    llm_run(
        4,
        ttft=(60.0, 75.0),
        tpot=(16.0, 20.0),
        prefill_tokens_per_s=8000.0,
        decode_tokens_per_s=250.0,
        valid=False,
    ),
)


def llm_result(
    runs: tuple[LlmRun, ...] = RUNS,
    *,
    accuracy: LlmAccuracy | None = ACCURACY,
    anchor: AnchorRecord | None = ANCHOR,
    scenario: str = "single-stream",
    cpu: str = "Test CPU",
) -> LlmResult:
    return LlmResult(
        created=CREATED,
        environment=Environment.from_json(environment(cpu)),
        model="smollm2-135m",
        ir_fingerprint="sha256:" + "12" * 32,
        target="onnxruntime",
        pipeline=None,
        resolved_pipeline=None,
        scenario=scenario,
        target_info=TargetInfoRecord(
            name="onnxruntime", version="1.23.0", device="cpu: Test CPU", hardware="host"
        ),
        audit=None,
        coverage=Coverage(nodes=400, fallback_nodes=0, node_coverage=1.0, flop_coverage=1.0),
        kv_cache="concatenation",
        compile_s=1.25,
        runs=runs,
        accuracy=accuracy,
        anchor=anchor,
    )


def scaled(result: LlmResult, decode: float) -> LlmResult:
    """`result` with every run's decode rate `decode` times as high."""
    runs = tuple(
        dataclasses.replace(run, decode_tokens_per_s=run.decode_tokens_per_s * decode)
        for run in result.runs
    )
    return dataclasses.replace(result, runs=runs)
