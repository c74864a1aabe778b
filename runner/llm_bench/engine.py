"""The LLM bench flow: check every run fits (context, memory) before any work, apply the
pipeline (audited, its drift read in KL and top-1), compile once with symbolic lengths, then
per (batch size, prompt length) one LoadGen token run over batches of real-text prompts, its
figures written at once (so Ctrl-C keeps finished runs and `--resume` skips them); last, the
accuracy on the perplexity text against the reference target.

What LoadGen measures and judges (TTFT, TPOT, the sample latency, its verdict) is copied from
its logs; what it does not (the session's own prefill and per-step times, the token rates,
peak memory, goodput from its per-sample trace) is added here."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx_ir as oir

from ir.errors import AsicperfError
from ir.fingerprint import fingerprint
from ir.memory import check_fits_in_memory
from ir.model_io import load_model
from passes.audit import audit_summary
from passes.instruments import Instrument, NumericCheck, VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import make_config, parse_pipeline
from passes.target_binding import bind_pipeline
from runner.bench.engine import (
    LOADGEN_FOLDER,
    LOADGEN_VERSION,
    REFERENCE_TARGET,
    precision_record,
)
from runner.bench.loadgen_result import latency_stats_of, loadgen_record, verdict
from runner.bench.results import coverage_of
from runner.bench.run_key import RunKey
from runner.bench.stats import latency_stats
from runner.llm_bench.accuracy import llm_accuracy
from runner.llm_bench.anchor import llama_bench
from runner.llm_bench.memory import PeakRss
from runner.llm_bench.model_source import LlmModel
from runner.llm_bench.prompts import PROMPT_BATCHES, prompt_batches
from runner.llm_bench.run_files import load_run, write_run
from runner.loadgen.goodput import goodput
from runner.loadgen.settings import LoadgenSettings
from runner.loadgen.token_run import TokenRun, run_token_loadgen
from runner.report.environment import environment
from runner.results.files import RESULT_FILE, write_result
from runner.results.llm import (
    LlmAccuracy,
    LlmResult,
    LlmRun,
    MemoryRecord,
    TokenConstraints,
)
from runner.results.model import AuditSummary, Coverage, PrecisionRecord, TargetInfoRecord
from targets.api import Session
from targets.executable import compile_model
from targets.reference_fallback import TargetFallback
from targets.registry import get_target
from zoo.builders.llama import BATCH, PAST_SEQUENCE, SEQUENCE, TOTAL_SEQUENCE
from zoo.llm.decoder_io import DecoderSignature, decoder_signature
from zoo.llm.evaluation_text import evaluation_text
from zoo.llm.session_generation import (
    KV_CACHE_GROWTH,
    PromptBatch,
    SessionGenerator,
    StepClock,
    prefill_feeds,
)
from zoo.llm_workload import LlmWorkload

# The pass audit's numeric check: one prefill of the perplexity text's first tokens, so each
# pass's drift is read in KL, same-top-1 and the perplexity of real text.
AUDIT_TOKENS = 64
WARMUP_GENERATIONS = 1  # a whole sequence before LoadGen times any: first-call costs paid


@dataclass(frozen=True)
class LlmPlan:
    """What to measure: the workload (with the user's overrides), the model and its tokenizer,
    the seed, whether to measure accuracy and where LoadGen's logs go (None: under the result
    folder)."""

    workload: LlmWorkload
    model: LlmModel
    seed: int
    command: tuple[str, ...] = ()
    accuracy: bool = True
    anchor: bool = False  # also measure llama.cpp on the model's GGUF (anchor.py)
    loadgen_log: Path | None = None

    def settings(self, batch_size: int) -> LoadgenSettings:
        """LoadGen's settings for one run: a sample is a static batch, so a server's arrivals
        are batches (requests of `batch_size` prompts) per second, and its sequence bound is
        the TTFT bound plus a TPOT bound per later token."""
        w = self.workload
        server = w.scenario == "server"
        bound = None
        if server and w.ttft_bound_ms is not None and w.tpot_bound_ms is not None:
            bound = w.ttft_bound_ms + w.tpot_bound_ms * (w.gen_len - 1)
        return LoadgenSettings(
            scenario=w.scenario,
            min_duration_s=w.min_duration_s,
            min_queries=w.min_queries,
            latency_bound_ms=bound,
            server_qps=w.server_rate if server else None,
            latency_percentile=w.latency_percentile,
            seed=self.seed,
            token_latencies=True,
            ttft_ms=w.ttft_bound_ms if server else None,
            tpot_ms=w.tpot_bound_ms if server else None,
        )


class LlmProgress(Protocol):
    """Progress, so the command can draw it without the engine knowing how."""

    def compiling(self) -> None: ...
    def timing(self, batch_size: int, prompt_len: int, fraction: float) -> None: ...
    def finished(self, run: LlmRun, resumed: bool) -> None: ...
    def scoring(self) -> None: ...
    def anchoring(self) -> None: ...


def check_plan(plan: LlmPlan, model: oir.Model) -> DecoderSignature:
    """Everything about the runs that can be wrong, before any is measured: the model is a
    decoder with a KV cache, every prompt plus its generation fits the context, and every
    batch fits in the memory available (prefill and the last decode step)."""
    w = plan.workload
    signature = decoder_signature(model, str(plan.model.onnx))
    longest = max(w.prompt_lens) + w.gen_len
    if longest > plan.model.context_length:
        raise AsicperfError(
            f"prompt {max(w.prompt_lens)} + {w.gen_len} generated = {longest} tokens: longer "
            f"than the model's context of {plan.model.context_length}"
        )
    for batch_size, prompt_len in itertools.product(w.batch_sizes, w.prompt_lens):
        total = prompt_len + w.gen_len
        what = f"batch {batch_size}, {prompt_len}+{w.gen_len} tokens"
        prefill = {BATCH: batch_size, SEQUENCE: prompt_len, PAST_SEQUENCE: 0}
        decode = {BATCH: batch_size, SEQUENCE: 1, PAST_SEQUENCE: total - 1}
        for bindings in (prefill, decode):
            bindings[TOTAL_SEQUENCE] = bindings[SEQUENCE] + bindings[PAST_SEQUENCE]
            check_fits_in_memory(model, what, bindings=bindings)
    return signature


@dataclass(frozen=True)
class _Compiled:
    """The target's session, without the compiled artifact it was loaded from (a second copy
    of the weights, which the runs' peak memory would otherwise carry)."""

    session: Session
    output_names: tuple[str, ...]
    audit: AuditSummary | None
    coverage: Coverage
    compile_s: float
    weights_bytes: int
    precision: PrecisionRecord | None


def _compile(
    plan: LlmPlan, model: oir.Model, pipeline_spec: str, audit_feeds: dict[str, np.ndarray]
) -> _Compiled:
    """The pipeline applied (audited on `audit_feeds`) and the model compiled, its session
    loaded for the largest batch size (the lengths are symbolic: one session serves every
    run)."""
    w = plan.workload
    target = get_target(w.target)
    config = make_config(type(target), w.target_options, kind="target")
    audit = None
    if pipeline_spec:
        runner = TargetFallback(w.target, config, 1)
        instruments: list[Instrument] = [
            VerifyAfterEachPass(),
            NumericCheck(plan.seed, runner=runner, feeds=audit_feeds),
        ]
        pipeline = run_pipeline(model, parse_pipeline(pipeline_spec), instruments)
        audit = AuditSummary.from_json(audit_summary(pipeline.records), "audit")
    weights = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value)
    start = time.perf_counter()
    executable = compile_model(target, model, config)
    compile_s = time.perf_counter() - start
    return _Compiled(
        session=executable.session(max(w.batch_sizes)),
        output_names=executable.output_names,
        audit=audit,
        coverage=coverage_of(executable.plan),
        compile_s=compile_s,
        weights_bytes=weights,
        precision=precision_record(executable),
    )


def anchor_threads(workload: LlmWorkload) -> int:
    """The threads the target runs on when its options say (`threads=N`), else one per CPU
    the OS gives this process, which is what onnxruntime's default uses here."""
    threads = int(workload.target_options.get("threads", 0) or 0)
    return threads if threads > 0 else len(os.sched_getaffinity(0))


def run_key(plan: LlmPlan, ir_fingerprint: str, pipeline: str) -> RunKey:
    w = plan.workload
    settings = {
        **dataclasses.asdict(plan.settings(1)),
        "gen_len": w.gen_len,
        "prompt_batches": PROMPT_BATCHES,
    }
    return RunKey(
        ir_fingerprint=ir_fingerprint,
        target=w.target_spec,
        pipeline=pipeline or None,
        scenario=w.scenario,
        loadgen=LOADGEN_VERSION,
        settings=settings,
        accuracy={},
    )


def bench_llm(plan: LlmPlan, folder: Path, resume: bool, progress: LlmProgress) -> LlmResult:
    """Measure every run not already done, then the accuracy; write and return the result."""
    w = plan.workload
    target = get_target(w.target)
    make_config(type(target), w.target_options, kind="target")  # fail before any work
    pipeline = bind_pipeline(w.pipeline, w.target)
    model = load_model(plan.model.onnx)
    signature = check_plan(plan, model)
    ir_fingerprint = fingerprint(model)
    key = run_key(plan, ir_fingerprint, pipeline)
    text = evaluation_text()
    stream = text.tokens(plan.model.tokenizer.encode, None)
    progress.compiling()
    audit_ids = np.asarray([stream[:AUDIT_TOKENS]], np.int64)
    audit_feeds = prefill_feeds(signature, PromptBatch(audit_ids, np.ones_like(audit_ids)))
    compiled = _compile(plan, model, pipeline, audit_feeds)
    del model  # the pipeline changed it; the reference reloads it, and runs need the memory
    generator = SessionGenerator(compiled.session, compiled.output_names, signature)
    logs = plan.loadgen_log or folder / LOADGEN_FOLDER
    measure = _Measure(plan, generator, signature, compiled.weights_bytes, folder, logs)
    runs = []
    for batch_size, prompt_len in itertools.product(w.batch_sizes, w.prompt_lens):
        done = load_run(folder, key, batch_size, prompt_len) if resume else None
        resumed = done is not None
        if done is None:
            done = measure.run(stream, batch_size, prompt_len, progress)
            write_run(folder, key, done)
        progress.finished(done, resumed)
        runs.append(done)
    accuracy = None
    if plan.accuracy:
        progress.scoring()
        accuracy = _accuracy(plan, generator, signature, stream, text.source)
    anchor = None
    if plan.anchor:
        progress.anchoring()
        anchor = llama_bench(
            plan.model.gguf,
            threads=anchor_threads(w),
            prompt_tokens=max(w.prompt_lens),
            gen_tokens=w.gen_len,
        )
    info = target.info()
    result = LlmResult(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        environment=environment(list(plan.command), plan.seed),
        model=w.model,
        ir_fingerprint=ir_fingerprint,
        target=w.target_spec,
        target_options=dict(w.target_options),
        pipeline=w.pipeline or None,
        resolved_pipeline=pipeline or None,
        scenario=w.scenario,
        target_info=TargetInfoRecord(
            name=info.name, version=info.version, device=info.device, hardware=info.hardware
        ),
        audit=compiled.audit,
        coverage=compiled.coverage,
        workload=w.to_json(),
        settings=dataclasses.asdict(plan.settings(1)),
        kv_cache=KV_CACHE_GROWTH,
        compile_s=compiled.compile_s,
        runs=tuple(runs),
        accuracy=accuracy,
        anchor=anchor,
        precision=compiled.precision,
    )
    write_result(folder / RESULT_FILE, result)
    return result


@dataclass(frozen=True)
class _Measure:
    plan: LlmPlan
    generator: SessionGenerator
    signature: DecoderSignature
    weights_bytes: int
    folder: Path
    logs: Path

    def run(
        self, stream: list[int], batch_size: int, prompt_len: int, progress: LlmProgress
    ) -> LlmRun:
        """One LoadGen token run; the session's own clock records only the timed samples (the
        warm-up's generations write to a clock of their own)."""
        w = self.plan.workload
        batches = prompt_batches(stream, batch_size, prompt_len)
        clock = StepClock()
        calls = itertools.count()

        def generate(index: int) -> Iterable[np.ndarray]:
            timed = next(calls) >= WARMUP_GENERATIONS
            return self.generator.generate(batches[index], w.gen_len, clock if timed else None)

        settings = self.plan.settings(batch_size)
        log_dir = self.logs / f"batch-{batch_size}-prompt-{prompt_len}"
        with PeakRss() as peak:
            run = run_token_loadgen(
                settings,
                generate,
                sample_count=len(batches),
                log_dir=log_dir,
                warmup_runs=WARMUP_GENERATIONS,
                tick=functools.partial(progress.timing, batch_size, prompt_len),
            )
        return self._record(run, settings, clock, batch_size, prompt_len, peak.bytes)

    def _record(
        self,
        run: TokenRun,
        settings: LoadgenSettings,
        clock: StepClock,
        batch_size: int,
        prompt_len: int,
        peak_bytes: int | None,
    ) -> LlmRun:
        w = self.plan.workload
        performance, tokens = run.loadgen.performance, run.tokens
        assert performance is not None and tokens is not None, "a performance run has figures"
        valid, why = verdict(run.loadgen, performance)
        duration_s = run.loadgen.timing.duration_s
        constraints = None
        achieved = None
        if settings.scenario == "server":
            assert settings.ttft_ms is not None and settings.tpot_ms is not None
            percentile = performance.target_latency_percentile
            constraints = TokenConstraints(
                ttft_ms=settings.ttft_ms, tpot_ms=settings.tpot_ms, percentile=percentile
            )
            assert run.samples is not None, "a performance run has its trace"
            achieved = goodput(
                run.samples, w.gen_len, settings.ttft_ms, settings.tpot_ms, duration_s
            )
        prefill_ms = latency_stats(clock.prefill_ms)
        decode_ms = clock.decode_ms or clock.prefill_ms  # one generated token: no decode step
        return LlmRun(
            batch_size=batch_size,
            prompt_len=prompt_len,
            gen_len=w.gen_len,
            scenario=w.scenario,
            samples=len(run.loadgen.timing.batch_ms),
            duration_s=duration_s,
            ttft_ms=latency_stats_of(tokens.ttft_ms) if tokens.ttft_ms else None,
            tpot_ms=latency_stats_of(tokens.tpot_ms) if tokens.tpot_ms else None,
            itl_ms=latency_stats(decode_ms),
            e2e_ms=latency_stats_of(performance.latency_ms),
            prefill_ms=prefill_ms,
            prefill_tokens_per_s=batch_size * prompt_len / (prefill_ms.mean / 1e3),
            decode_tokens_per_s=batch_size / (float(np.mean(decode_ms)) / 1e3),
            tokens_per_s=tokens.tokens_per_s * batch_size,
            valid=valid,
            why=why,
            constraints=constraints,
            goodput=achieved,
            memory=MemoryRecord(
                peak_rss_bytes=peak_bytes,
                kv_cache_bytes=self.signature.kv_cache_bytes(batch_size, prompt_len + w.gen_len),
                weights_bytes=self.weights_bytes,
            ),
            loadgen=loadgen_record(run.loadgen, performance, self.folder),
        )


def _accuracy(
    plan: LlmPlan,
    candidate: SessionGenerator,
    signature: DecoderSignature,
    stream: list[int],
    source: str,
) -> LlmAccuracy:
    """Against the model as loaded on the reference target (loaded and compiled here, after
    the runs, so its memory is not in theirs)."""
    w = plan.workload
    reference_executable = compile_model(get_target(REFERENCE_TARGET), load_model(plan.model.onnx))
    reference = SessionGenerator(
        reference_executable.session(1), reference_executable.output_names, signature
    )
    tokenizer = plan.model.tokenizer
    return llm_accuracy(
        candidate,
        reference,
        text_tokens=stream,
        text_source=source,
        bos_token=tokenizer.bos_id if tokenizer.add_bos else None,
        n_ctx=w.perplexity_context,
        chunks=w.perplexity_chunks,
        greedy_prompt=tokenizer.encode(w.greedy_prompt),
        greedy_count=w.greedy_tokens,
        reference_target=REFERENCE_TARGET,
        thresholds={
            "max_kl_mean": w.max_kl_mean,
            "min_same_top1": w.min_same_top1,
            "max_perplexity_ratio": w.max_perplexity_ratio,
        },
    )
