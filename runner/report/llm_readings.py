"""What the report reads off an LLM result, in words: each run's name, its server constraints
and goodput, the llama-bench summary beside the anchor's, and the accuracy on real text. The
terminal view and the HTML page both print these, so an LLM result reads alike in each."""

from __future__ import annotations

from runner.report.readings import share_text
from runner.results.llm import (
    AnchorRecord,
    Goodput,
    LlamaBenchLine,
    LlmAccuracy,
    LlmResult,
    LlmRun,
    TokenConstraints,
    llama_bench_line,
)
from runner.results.model import Coverage

MIB = 2**20


def run_name(run: LlmRun) -> str:
    """What a run measured, as a comparison matches it: batch, prompt and generation lengths."""
    return f"batch {run.batch_size}, prompt {run.prompt_len}, gen {run.gen_len}"


def ttft_p50(run: LlmRun) -> float | None:
    """The median time to first token; None in offline, which takes no first token."""
    return None if run.ttft_ms is None else run.ttft_ms.p50


def tpot_p50(run: LlmRun) -> float | None:
    """The median time per output token; None in offline."""
    return None if run.tpot_ms is None else run.tpot_ms.p50


def mib(size: int | None) -> float | None:
    """Bytes in MiB; None where the size was not reported."""
    return None if size is None else size / MIB


def percentile_name(fraction: float) -> str:
    """LoadGen's target percentile as a name: 0.99 is "p99", 0.999 "p99.9"."""
    return f"p{round(100 * fraction, 4):g}"


def constraints_text(constraints: TokenConstraints) -> str:
    return (
        f"TTFT ≤ {constraints.ttft_ms:g} ms, TPOT ≤ {constraints.tpot_ms:g} ms "
        f"at {percentile_name(constraints.percentile)}"
    )


def goodput_text(goodput: Goodput) -> str:
    return (
        f"{goodput.met} of {goodput.requests} requests met both "
        f"({goodput.requests_per_s:.2f} requests/s)"
    )


def coverage_text(coverage: Coverage) -> str:
    """How much of the decoder ran on the target; the rest ran on the reference fallback."""
    on_target = coverage.nodes - coverage.fallback_nodes
    return (
        f"{on_target} of {coverage.nodes} nodes on the target "
        f"({share_text(coverage.node_coverage)}), {share_text(coverage.flop_coverage)} of FLOPs"
    )


def bench_lines(result: LlmResult) -> list[tuple[str, str]]:
    """The llama-bench summary of the batch-1 runs, the anchor's rates measured beside them,
    and ours over the anchor's, naming the sizes where the two measured different work."""
    line = llama_bench_line(result.runs)
    shown = [("llama-bench (batch 1)", "no batch-1 run" if line is None else str(line))]
    anchor = result.anchor
    if anchor is None:
        return shown
    theirs = _anchor_line(anchor)
    shown.append(
        ("anchor", f"{anchor.runtime}, {anchor.weights}, {anchor.threads} threads: {theirs}")
    )
    if line is not None:
        shown.append(("ours / anchor", _ratio_text(line, theirs)))
    return shown


def _anchor_line(anchor: AnchorRecord) -> LlamaBenchLine:
    return LlamaBenchLine(
        anchor.prompt_tokens,
        anchor.prefill_tokens_per_s,
        anchor.gen_tokens,
        anchor.decode_tokens_per_s,
    )


def _ratio_text(ours: LlamaBenchLine, theirs: LlamaBenchLine) -> str:
    prefill = ours.prefill_tokens_per_s / theirs.prefill_tokens_per_s
    decode = ours.decode_tokens_per_s / theirs.decode_tokens_per_s
    text = f"pp {prefill:.2f}, tg {decode:.2f}"
    sizes = (ours.prompt_len, ours.gen_len), (theirs.prompt_len, theirs.gen_len)
    if sizes[0] != sizes[1]:
        text += (
            f" (different sizes: ours pp{ours.prompt_len} tg{ours.gen_len}, "
            f"anchor pp{theirs.prompt_len} tg{theirs.gen_len})"
        )
    return text


def accuracy_fields(accuracy: LlmAccuracy | None) -> list[tuple[str, str]]:
    """Perplexity, the reference's, the drift from the reference's logits and greedy text, and
    the verdict, as (measure, value) pairs."""
    if accuracy is None:
        return [("accuracy", "not measured")]
    ppl = accuracy.perplexity
    kl = accuracy.kl_divergence
    reference = accuracy.reference_perplexity
    first = accuracy.first_difference
    greedy = (
        f"all {accuracy.greedy_tokens} tokens match the reference's"
        if first is None
        else f"the first {first} of {accuracy.greedy_tokens} tokens match the reference's"
    )
    return [
        (
            "perplexity",
            f"{ppl.value:.4f} ± {ppl.uncertainty:.4f} (n_ctx {ppl.n_ctx}, {ppl.chunks} chunks, "
            f"{ppl.tokens_scored} tokens scored; text {ppl.text})",
        ),
        (
            "reference perplexity",
            "not measured"
            if reference is None
            else f"{reference:.4f} (on {accuracy.reference_target})",
        ),
        (
            "KL divergence",
            f"mean {kl.mean:.4g}, p99 {kl.p99:.4g}, max {kl.max:.4g} nats "
            f"over {accuracy.tokens_compared} tokens",
        ),
        ("same top-1", f"{accuracy.same_top1:.2%}"),
        ("greedy generation", greedy),
        ("verdict", _verdict(accuracy)),
    ]


def _verdict(accuracy: LlmAccuracy) -> str:
    if accuracy.passed is None:
        return f"not judged ({accuracy.why})" if accuracy.why else "not judged"
    return f"{'passed' if accuracy.passed else 'FAILED'}: {accuracy.why}"
