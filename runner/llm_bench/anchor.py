"""llama.cpp on the same GGUF file, the same machine and the same threads as the benchmark, so
its result can show the gap to the runtime most users of a GGUF model run today.

`llama_bench` measures the way llama.cpp's `llama-bench` does: the pp test evaluates one batch
of random token ids from an empty cache, the tg test feeds random ids one at a time from an
empty cache; nothing is sampled and no text is tokenized, so only the model's forward passes
are timed. Each test runs once to warm up, then `repetitions` times, and the rate reported is
the mean of the per-repetition rates (llama-bench's `avg_ts`).

`llama_cpp_logits` gives llama.cpp's logits for whole chunks, so its perplexity can be computed
with zoo/llm/perplexity.py on exactly the tokens asicperf scores.

llama.cpp comes from `llama-cpp-python`, an optional extra that builds llama.cpp from source.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import gguf
import numpy as np

from ir.errors import AsicperfError
from runner.results.llm import AnchorRecord
from zoo.llm.gguf_file import GgufFile, open_gguf
from zoo.llm.perplexity import Logits

if TYPE_CHECKING:
    from llama_cpp import Llama

INSTALL = "pip install 'asicperf[llamacpp]'"
TOKEN_SEED = 1  # llama-bench draws its ids with std::rand, whose default seed is 1


def llama_cpp_available() -> str | None:
    """None when llama-cpp-python imports, else why not in one line with the install command.
    A wheel whose bundled llama.cpp library fails to load raises OSError or RuntimeError."""
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError, RuntimeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        return f"llama.cpp is unavailable ({reason}): {INSTALL}"
    return None


def gguf_weights(file: GgufFile) -> str:
    """What llama.cpp runs from `file`, e.g. "Q4_1 GGUF": its `general.file_type`, or, where
    that is absent or unknown, the tensor type holding the most bytes."""
    if file.has("general.file_type"):
        try:
            file_type = gguf.LlamaFileType(file.integer("general.file_type"))
        except ValueError:
            file_type = None
        if file_type is not None and file_type is not gguf.LlamaFileType.GUESSED:
            return f"{file_type.name.removeprefix('MOSTLY_').removeprefix('ALL_')} GGUF"
    sizes: Counter[str] = Counter()
    for tensor in file.reader.tensors:
        sizes[tensor.tensor_type.name] += int(tensor.n_bytes)
    if not sizes:
        raise AsicperfError(f"{file.path}: the GGUF file has no tensors")
    return f"{sizes.most_common(1)[0][0]} GGUF"


def llama_bench(
    gguf_path: Path, *, threads: int, prompt_tokens: int, gen_tokens: int, repetitions: int = 3
) -> AnchorRecord:
    """llama-bench's pp`prompt_tokens` and tg`gen_tokens` rates of llama.cpp running
    `gguf_path` on `threads` threads."""
    for name, value in (
        ("threads", threads),
        ("prompt tokens", prompt_tokens),
        ("generated tokens", gen_tokens),
        ("repetitions", repetitions),
    ):
        if value < 1:
            raise AsicperfError(f"llama.cpp anchor: {name} is {value}, it must be at least 1")
    file = open_gguf(gguf_path)
    # n_batch = prompt_tokens makes the pp test one batch (llama.cpp splits it into its
    # default micro-batches of 512, as llama-bench does).
    llm = _load(
        file.path,
        threads=threads,
        n_ctx=prompt_tokens + gen_tokens,
        n_batch=prompt_tokens,
        logits_all=False,
    )
    draw = _random_ids(llm)
    prefill = _mean_rate(llm, lambda: [draw(prompt_tokens)], prompt_tokens, repetitions)
    decode = _mean_rate(
        llm, lambda: [[token] for token in draw(gen_tokens)], gen_tokens, repetitions
    )
    import llama_cpp

    return AnchorRecord(
        runtime=f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
        weights=gguf_weights(file),
        threads=threads,
        prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens,
        prefill_tokens_per_s=prefill,
        decode_tokens_per_s=decode,
    )


def llama_cpp_logits(gguf_path: Path, threads: int, n_ctx: int) -> Logits:
    """llama.cpp's logits for token ids [chunks, length <= n_ctx]: [chunks, length, vocab]
    float32, every position scored, each chunk evaluated from an empty cache (what
    zoo/llm/perplexity.py asks of a model)."""
    file = open_gguf(gguf_path)
    llm = _load(file.path, threads=threads, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True)
    vocab = llm.n_vocab()

    def logits(token_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(token_ids)
        if ids.ndim != 2 or not 1 <= ids.shape[1] <= n_ctx:
            raise AsicperfError(
                f"llama.cpp logits of token ids {tuple(ids.shape)}: expected [chunks, length] "
                f"with 1 <= length <= {n_ctx}"
            )
        if ids.size and not 0 <= int(ids.min()) <= int(ids.max()) < vocab:
            raise AsicperfError(
                f"llama.cpp logits: token ids {int(ids.min())}..{int(ids.max())} fall outside "
                f"{file.path}'s vocabulary of {vocab}"
            )
        scores = np.empty((*ids.shape, vocab), np.float32)
        for row, chunk in zip(scores, ids, strict=True):
            llm.reset()  # the next eval starts at position 0, dropping the cached chunk
            llm.eval(chunk.tolist())
            row[:] = llm.scores[: len(chunk)]
        return scores

    return logits


def _load(path: Path, *, threads: int, n_ctx: int, n_batch: int, logits_all: bool) -> Llama:
    """`path` in llama.cpp on `threads` threads for both prompt batches and single tokens."""
    unavailable = llama_cpp_available()
    if unavailable is not None:
        raise AsicperfError(unavailable)
    from llama_cpp import Llama

    try:
        return Llama(
            str(path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=logits_all,
            verbose=False,
        )
    except ValueError as error:  # llama-cpp-python's "Failed to load model from file"
        raise AsicperfError(f"{path}: llama.cpp cannot load it ({error})") from None


def _random_ids(llm: Llama) -> Callable[[int], list[int]]:
    """A function drawing n token ids the way llama-bench does: uniform over the vocabulary,
    seeded, the first being BOS where llama.cpp puts one before a text."""
    rng = np.random.default_rng(TOKEN_SEED)
    first = llm.tokenize(b"", add_bos=True)  # [BOS] or [], as the model's vocabulary says
    vocab = llm.n_vocab()

    def draw(count: int) -> list[int]:
        return first[:count] + rng.integers(0, vocab, count - len(first[:count])).tolist()

    return draw


def _mean_rate(
    llm: Llama, batches: Callable[[], list[list[int]]], tokens: int, repetitions: int
) -> float:
    """Tokens per second, the mean over `repetitions` timed runs after one warm-up run; each
    run evaluates fresh `batches()` (drawn before its clock starts) from an empty cache."""
    import llama_cpp

    def run() -> float:
        steps = batches()
        llm.reset()
        start = time.perf_counter()
        for step in steps:
            llm.eval(step)
        llama_cpp.llama_synchronize(llm.ctx)
        return time.perf_counter() - start

    run()
    return float(np.mean([tokens / run() for _ in range(repetitions)]))
