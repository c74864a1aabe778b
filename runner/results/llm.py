"""An LLM result (`runner bench --level llm`): what ran (model, pipeline and its audit, target),
one run per (batch size, prompt length, generation length) with its token latencies, token
rates, memory and verdict, and the model's accuracy on real text against the reference.

A run is a LoadGen test whose samples are static batches: one sample is `batch_size` prompts
of `prompt_len` tokens each, prefilled together and decoded together for `gen_len` tokens. So
TTFT is the time to the batch's first tokens and TPOT the pace of each sequence's later
tokens; the token rates count every sequence of the batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runner.results.document import ResultDocument
from runner.results.model import (
    AuditSummary,
    Coverage,
    KlDivergenceRecord,
    LatencyStats,
    LoadgenRecord,
    PrecisionRecord,
    TargetInfoRecord,
)
from runner.results.record import Record, omitted_when_none


@dataclass(frozen=True, kw_only=True)
class TokenConstraints(Record):
    """The server scenario's bounds, judged at LoadGen's target latency percentile; a request
    counts toward goodput when it meets both."""

    ttft_ms: float
    tpot_ms: float
    percentile: float  # 0.99 = p99


@dataclass(frozen=True, kw_only=True)
class Goodput(Record):
    """Requests (samples) that met every constraint, per second of the run, from LoadGen's
    per-sample trace: `met` of `requests` met both bounds."""

    requests_per_s: float
    met: int
    requests: int


@dataclass(frozen=True, kw_only=True)
class MemoryRecord(Record):
    """Peak resident memory of the process during the run (timed queries and warm-up), the KV
    cache of one batch at its full length (prompt + generated) and the model's weights."""

    peak_rss_bytes: int | None  # None where the OS does not report it
    kv_cache_bytes: int
    weights_bytes: int


@dataclass(frozen=True, kw_only=True)
class LlmRun(Record):
    """One (batch size, prompt length, generation length) under one LoadGen scenario.

    `ttft_ms`, `tpot_ms` and `e2e_ms` are LoadGen's, per sample, from its scheduled time
    (None in offline, which takes no first token); `itl_ms` is the session's own clock between
    consecutive tokens of a sample (every decode step), `prefill_ms` its prompt pass up to the
    first tokens. Token rates count every sequence of the batch: `prefill_tokens_per_s` is
    batch x prompt length over the prefill time, `decode_tokens_per_s` batch over the mean
    decode step, `tokens_per_s` LoadGen's generated tokens per second of the run."""

    batch_size: int
    prompt_len: int
    gen_len: int
    scenario: str
    samples: int  # LoadGen's completed samples (each a batch)
    duration_s: float
    ttft_ms: LatencyStats | None
    tpot_ms: LatencyStats | None
    itl_ms: LatencyStats
    e2e_ms: LatencyStats
    prefill_ms: LatencyStats
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    tokens_per_s: float
    valid: bool
    why: str  # the LoadGen rules that failed (and its errors), or those met
    constraints: TokenConstraints | None = None  # server only
    goodput: Goodput | None = None  # server only
    memory: MemoryRecord
    loadgen: LoadgenRecord


@dataclass(frozen=True, kw_only=True)
class PerplexityRecord(Record):
    """llama.cpp's perplexity (zoo/llm/perplexity.py) on `text`: `value` +/- `uncertainty`."""

    value: float
    uncertainty: float
    n_ctx: int
    chunks: int
    tokens_scored: int
    text: str  # where the text came from


@dataclass(frozen=True, kw_only=True)
class LlmAccuracy(Record):
    """The benchmarked model (after its pipeline, on the target) on real text: its perplexity
    and the reference's (the FP32 model on the reference target), the per-position KL
    divergence from the reference's logits and their same-top-1 rate over `tokens_compared`,
    and where a greedy generation of `greedy_tokens` first differs from the reference's
    (None: it does not). `passed` holds the workload's thresholds; `why` names each one."""

    perplexity: PerplexityRecord
    reference_perplexity: float | None
    kl_divergence: KlDivergenceRecord
    same_top1: float
    tokens_compared: int
    first_difference: int | None
    greedy_tokens: int
    reference_target: str
    passed: bool | None = None  # None: the workload sets no threshold
    why: str = ""


@dataclass(frozen=True, kw_only=True)
class AnchorRecord(Record):
    """Another runtime measured in the same run, on the same machine and threads, for scale
    (llama.cpp running the same GGUF at its own precision): llama-bench's pp and tg rates."""

    runtime: str  # with its version
    weights: str  # what it ran, e.g. "Q4_1 GGUF"
    threads: int
    prompt_tokens: int  # the pp test: one batch of this many tokens
    gen_tokens: int  # the tg test: this many single-token steps
    prefill_tokens_per_s: float
    decode_tokens_per_s: float


@dataclass(frozen=True, kw_only=True)
class LlmResult(ResultDocument):
    KIND: ClassVar[str] = "llm"

    model: str  # the zoo name or path as given
    ir_fingerprint: str  # of the model as loaded, before any pass
    target: str  # the target spec, with its options
    target_options: Mapping[str, Any] = field(default_factory=dict)
    pipeline: str | None
    resolved_pipeline: str | None
    scenario: str
    target_info: TargetInfoRecord
    audit: AuditSummary | None
    coverage: Coverage
    workload: Mapping[str, Any] = field(default_factory=dict)  # after command-line overrides
    settings: Mapping[str, Any] = field(default_factory=dict)  # the scenario's settings
    kv_cache: str  # how the cache grows between steps, e.g. "concatenation"
    compile_s: float
    runs: tuple[LlmRun, ...]
    accuracy: LlmAccuracy | None  # None: skipped (--no-accuracy)
    anchor: AnchorRecord | None = omitted_when_none()  # noqa: RUF009
    # None: the target recorded none (it runs the model's own type), or written before
    precision: PrecisionRecord | None = omitted_when_none()  # noqa: RUF009


@dataclass(frozen=True)
class LlamaBenchLine:
    """llama-bench's summary: `pp{N}` the prompt rate of the longest prompt, `tg{M}` the
    generation rate, both at batch 1 (llama-bench measures one sequence)."""

    prompt_len: int
    prefill_tokens_per_s: float
    gen_len: int
    decode_tokens_per_s: float

    def __str__(self) -> str:
        return (
            f"pp{self.prompt_len} {self.prefill_tokens_per_s:.1f} tokens/s · "
            f"tg{self.gen_len} {self.decode_tokens_per_s:.1f} tokens/s"
        )


def llama_bench_line(runs: tuple[LlmRun, ...]) -> LlamaBenchLine | None:
    """The summary from the batch-1 runs (None without one): pp of the longest prompt, tg of
    the longest generation."""
    single = [run for run in runs if run.batch_size == 1]
    if not single:
        return None
    prompt = max(single, key=lambda run: (run.prompt_len, run.prefill_tokens_per_s))
    generation = max(single, key=lambda run: (run.gen_len, -run.prompt_len))
    return LlamaBenchLine(
        prompt.prompt_len,
        prompt.prefill_tokens_per_s,
        generation.gen_len,
        generation.decode_tokens_per_s,
    )
