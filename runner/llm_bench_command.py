"""`runner bench --level llm --model M`: time to first token, time per output token and token
rates of a decoder LLM per batch size and prompt length under an MLPerf LoadGen scenario, its
peak memory and KV-cache bytes, and its perplexity and drift against the reference target
(runner/llm_bench/). The options shared with `--level model` are registered in
bench_command.py; this module adds this level's own and needs nothing beyond the core
dependencies until the level runs, which takes the `llm` extra."""

from __future__ import annotations

import argparse
import importlib.util

from ir.errors import AsicperfError

# What the level needs beyond the core: the GGUF reader and the tokenizer library.
LLM_EXTRA = ("gguf", "tokenizers")
# The options only this level reads (the shared ones are in bench_command.py).
LLM_OPTIONS = ("prompt_len", "gen_len", "rate", "ttft_bound", "tpot_bound", "gguf")
LLM_FLAGS = ("no_accuracy", "anchor")


def register_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--level llm")
    group.add_argument("--prompt-len", metavar="128,512", help="prompt lengths in tokens")
    group.add_argument("--gen-len", metavar="N", help="tokens generated per prompt")
    group.add_argument(
        "--rate", metavar="R", help="server: requests (static batches of prompts) per second"
    )
    group.add_argument("--ttft-bound", metavar="MS", help="server: TTFT bound in ms")
    group.add_argument("--tpot-bound", metavar="MS", help="server: TPOT bound in ms")
    group.add_argument(
        "--gguf",
        metavar="FILE",
        help="the GGUF file an .onnx model's tokenizer is read from (a zoo model names its own)",
    )
    group.add_argument(
        "--anchor",
        action="store_true",
        help="also measure llama.cpp (pip install 'asicperf[llamacpp]') on the model's GGUF, "
        "same threads: pp and tg tokens/s for scale",
    )
    group.add_argument(
        "--no-accuracy",
        action="store_true",
        help="skip perplexity and drift against the reference target",
    )


def run_llm_bench(args: argparse.Namespace) -> int:
    missing = [module for module in LLM_EXTRA if importlib.util.find_spec(module) is None]
    if missing:
        raise AsicperfError(f"--level llm needs {', '.join(missing)}: pip install 'asicperf[llm]'")
    from runner.llm_bench.run_command import run  # imports the extra's modules

    return run(args)
