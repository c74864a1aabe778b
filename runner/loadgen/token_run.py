"""One LoadGen test of a token-streaming session (LLMs): the run of run.py, with LoadGen's
token latencies on and the token figures read back.

A LoadGen sample here is one input (a prompt) and its generated sequence, so the settings'
items are sequences: `server_qps` is sequences per second. The warm-up generates whole
sequences, which is also what LoadGen is told a sample takes (lg_settings.py).

A performance run also reads each sample's TTFT and latency from LoadGen's trace, which
run.py turns on for token runs (sample_trace.py): figures per request, such as goodput.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ir.errors import AsicperfError
from runner.loadgen.progress import Tick
from runner.loadgen.run import LoadgenRun, run_server
from runner.loadgen.sample_trace import SampleTokenTiming, sample_timings
from runner.loadgen.settings import LoadgenSettings
from runner.loadgen.token_latencies import TokenLatencies, token_latencies_of
from runner.loadgen.tokens import TokenStream, token_server
from runner.loadgen.warmup import WARMUP_RUNS

SEQUENCES_PER_SAMPLE = 1


@dataclass(frozen=True)
class TokenRun:
    """`loadgen`: the run as any other (verdict, reasons, latencies to the last token);
    `tokens`: its TTFT and TPOT; `samples`: each sample's, in sample order. Both are None for
    an accuracy run (LoadGen logs no figures then)."""

    loadgen: LoadgenRun
    tokens: TokenLatencies | None
    samples: tuple[SampleTokenTiming, ...] | None


def run_token_loadgen(
    settings: LoadgenSettings,
    generate: TokenStream,
    *,
    sample_count: int,
    log_dir: Path,
    accuracy: bool = False,
    warmup_runs: int = WARMUP_RUNS,
    tick: Tick = lambda fraction: None,
) -> TokenRun:
    """Measure `generate` (sample index in range(sample_count) -> its token chunks, tokens.py)
    under `settings`, which must ask for token latencies; LoadGen's logs go to `log_dir`.
    With `accuracy`, LoadGen's accuracy mode: every sample once, its tokens logged. A
    performance run first generates `warmup_runs` whole samples (a long generation may want
    fewer than a model-level run's warm-up)."""
    if not settings.token_latencies:
        raise AsicperfError("a token-streaming run needs token latencies on in its settings")
    loadgen, log = run_server(
        settings,
        token_server(generate, with_responses=accuracy),
        warm_up=lambda index: list(generate(index)),
        warmup_runs=warmup_runs,
        batch_count=sample_count,
        batch_size=SEQUENCES_PER_SAMPLE,
        log_dir=log_dir,
        accuracy=accuracy,
        tick=tick,
    )
    if accuracy:
        return TokenRun(loadgen, None, None)
    return TokenRun(loadgen, token_latencies_of(log), sample_timings(loadgen.files.trace))
