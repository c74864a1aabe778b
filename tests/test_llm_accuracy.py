"""The LLM accuracy measures on synthetic logits whose answers are known in closed form:
perplexity as llama.cpp computes it (chunks, second half scored, BOS), KL divergence, same
top-1, the first differing greedy token, and the evaluation text."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from ir.errors import AsicperfError
from ir.log_probs import log_softmax, target_log_probs
from ir.logit_drift import logit_drift, token_kl_divergence
from zoo.llm.evaluation_text import evaluation_text
from zoo.llm.greedy import first_difference
from zoo.llm.perplexity import context_chunks, first_scored, perplexity

VOCAB = 8


def _uniform(batch: np.ndarray) -> np.ndarray:
    return np.zeros((*batch.shape, VOCAB), dtype=np.float32)


def _oracle(probability_at: np.ndarray):
    """A model that gives the true next token probability `probability_at[j]` at position j of
    every chunk, the rest spread evenly over the other tokens: it peeks at the chunk, which only
    a synthetic model may, so its perplexity is known exactly."""

    def logits(batch: np.ndarray) -> np.ndarray:
        chunks, n_ctx = batch.shape
        probs = np.empty((chunks, n_ctx, VOCAB))
        probs[:] = ((1.0 - probability_at) / (VOCAB - 1))[None, :, None]
        for position in range(n_ctx - 1):
            following = batch[:, position + 1]
            probs[np.arange(chunks), position, following] = probability_at[position]
        return np.log(probs).astype(np.float32)

    return logits


def _stream(length: int) -> list[int]:
    return [(7 * index + 3) % VOCAB for index in range(length)]


def test_uniform_logits_give_the_vocabulary_size() -> None:
    result = perplexity(_uniform, _stream(40), n_ctx=8, bos_token=None)
    assert result.value == pytest.approx(VOCAB, rel=1e-12)
    assert result.uncertainty == pytest.approx(0.0, abs=1e-9)


def test_probability_p_on_the_right_token_gives_one_over_p() -> None:
    result = perplexity(_oracle(np.full(8, 0.4)), _stream(40), n_ctx=8, bos_token=None)
    assert result.value == pytest.approx(1 / 0.4, rel=1e-6)


def test_only_the_second_half_of_each_chunk_is_scored() -> None:
    # n_ctx 8: logits at positions 4, 5, 6 score tokens 5, 6, 7; each position its own p.
    probability_at = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.25, 0.125, 0.3])
    result = perplexity(_oracle(probability_at), _stream(40), n_ctx=8, bos_token=None)
    expected = math.exp(-np.mean(np.log([0.5, 0.25, 0.125])))
    assert result.value == pytest.approx(expected, rel=1e-6)
    assert first_scored(8) == 5
    assert (result.chunks, result.tokens_scored) == (5, 5 * 3)


def test_an_odd_context_scores_from_past_its_middle() -> None:
    # n_ctx 7: llama.cpp's first = 7/2 = 3, so tokens 4, 5, 6 are scored.
    assert first_scored(7) == 4
    result = perplexity(_uniform, _stream(21), n_ctx=7, bos_token=None)
    assert (result.chunks, result.tokens_scored) == (3, 9)


def test_uncertainty_is_llama_cpp_standard_error_scaled_by_the_perplexity() -> None:
    # Per chunk the scored NLLs are -log 0.5, -log 0.25, -log 0.125 = (1, 2, 3) * log 2.
    probability_at = np.array([0.9, 0.9, 0.9, 0.9, 0.5, 0.25, 0.125, 0.9])
    result = perplexity(_oracle(probability_at), _stream(16), n_ctx=8, bos_token=None)
    nll = np.log(2) * np.array([1, 2, 3, 1, 2, 3])
    mean, mean_of_squares = nll.mean(), (nll**2).mean()
    expected = math.exp(mean) * math.sqrt((mean_of_squares - mean**2) / (len(nll) - 1))
    assert result.uncertainty == pytest.approx(expected, rel=1e-6)


def test_chunks_are_consecutive_with_bos_first_and_the_tail_dropped() -> None:
    tokens = list(range(10, 29))  # 19 tokens: two chunks of 8, three left over
    chunks = context_chunks(tokens, n_ctx=8, bos_token=1)
    assert chunks.dtype == np.int64
    assert chunks.tolist() == [[1, *range(11, 18)], [1, *range(19, 26)]]
    assert tokens == list(range(10, 29))
    assert context_chunks(tokens, n_ctx=8, bos_token=None)[1].tolist() == list(range(18, 26))


def test_the_model_sees_the_chunks_in_batches() -> None:
    seen: list[list[list[int]]] = []

    def recording(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.tolist())
        return _uniform(batch)

    perplexity(recording, _stream(40), n_ctx=8, bos_token=2, batch_size=2)
    assert [len(batch) for batch in seen] == [2, 2, 1]
    assert all(chunk[0] == 2 for batch in seen for chunk in batch)
    assert seen[1][0][1:] == _stream(40)[17:24]


def test_max_chunks_limits_the_work() -> None:
    result = perplexity(_uniform, _stream(40), n_ctx=8, bos_token=None, max_chunks=2)
    assert (result.chunks, result.tokens_scored) == (2, 6)


@pytest.mark.parametrize(
    ("length", "n_ctx", "max_chunks", "message"),
    [
        (15, 8, None, "at least 16 tokens (2 chunks of 8); the text has 15"),
        (40, 8, 1, "perplexity over 1 chunks: at least 2 needed"),
        (40, 2, None, "context of 2 tokens: it must be at least 3"),
    ],
)
def test_too_little_to_score_is_refused_in_one_line(
    length: int, n_ctx: int, max_chunks: int | None, message: str
) -> None:
    with pytest.raises(AsicperfError, match=re.escape(message)) as error:
        perplexity(_uniform, _stream(length), n_ctx=n_ctx, bos_token=None, max_chunks=max_chunks)
    assert "\n" not in str(error.value)


def test_logits_of_the_wrong_shape_or_vocabulary_are_refused() -> None:
    def last_position_only(batch: np.ndarray) -> np.ndarray:
        return _uniform(batch)[:, -1:]

    with pytest.raises(AsicperfError, match=r"shape \(1, 1, 8\) for tokens \(1, 8\)"):
        perplexity(last_position_only, _stream(16), n_ctx=8, bos_token=None)
    with pytest.raises(AsicperfError, match="token id 9 is outside the model's vocabulary of 8"):
        perplexity(_uniform, [9] * 16, n_ctx=8, bos_token=None)


def test_log_softmax_is_float64_and_survives_huge_logits() -> None:
    logits = np.array([[1e4, 1e4 + np.log(3.0), -1e4]], dtype=np.float32)
    log_probs = log_softmax(logits)
    assert log_probs.dtype == np.float64
    assert np.exp(log_probs).tolist()[0] == pytest.approx([0.25, 0.75, 0.0], abs=1e-3)
    assert target_log_probs(logits, np.array([0]))[0] == pytest.approx(np.log(0.25), abs=1e-3)


def test_kl_of_identical_or_shifted_logits_is_zero() -> None:
    logits = np.random.default_rng(0).normal(size=(2, 5, 50)).astype(np.float32)
    assert token_kl_divergence(logits, logits).tolist() == [0.0] * 10
    shifted = token_kl_divergence(logits, logits + np.float32(3.0))
    assert shifted.max() == pytest.approx(0.0, abs=1e-6)


def test_kl_matches_the_closed_form_in_the_reference_direction() -> None:
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    reference, candidate = np.log(p)[None], np.log(q)[None]
    forward = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    backward = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert token_kl_divergence(reference, candidate)[0] == pytest.approx(forward, rel=1e-12)
    assert token_kl_divergence(candidate, reference)[0] == pytest.approx(backward, rel=1e-12)


def test_drift_summary_mean_p99_max_and_same_top1() -> None:
    # 100 positions over 3 tokens; the reference is always [0.5, 0.25, 0.25]. The candidate
    # agrees on 99 of them and on position 42 swaps the first two probabilities: KL = 0.25 ln 2
    # there, and its top token moves.
    reference = np.tile(np.log([0.5, 0.25, 0.25]), (4, 25, 1))
    candidate = reference.copy()
    candidate[1, 17] = np.log([0.25, 0.5, 0.25])
    drift = logit_drift(reference, candidate)
    outlier = 0.25 * math.log(2)
    assert drift.tokens == 100
    assert drift.kl_max == pytest.approx(outlier, rel=1e-12)
    assert drift.kl_mean == pytest.approx(outlier / 100, rel=1e-12)
    assert drift.kl_p99 == pytest.approx(0.01 * outlier, rel=1e-9)  # linear: 99.01st of 100
    assert (drift.same_top1_tokens, drift.same_top1) == (99, 0.99)
    assert drift.to_json()["kl_divergence"]["max"] == drift.kl_max


def test_drift_refuses_logits_of_different_shapes() -> None:
    with pytest.raises(AsicperfError, match=r"reference logits \(2, 4\) and candidate \(2, 5\)"):
        logit_drift(np.zeros((2, 4)), np.zeros((2, 5)))


@pytest.mark.parametrize(
    ("reference", "candidate", "expected"),
    [
        ([5, 6, 7], [5, 6, 7], None),
        ([5, 6, 7], [5, 9, 7], 1),
        ([5, 6, 7], [4, 6, 7], 0),
        ([5, 6, 7], [5, 6], 2),
        ([], [], None),
    ],
)
def test_first_difference_of_greedy_generations(
    reference: list[int], candidate: list[int], expected: int | None
) -> None:
    assert first_difference(reference, candidate) == expected


def test_evaluation_text_is_the_sorted_pydoc_topics_and_deterministic() -> None:
    from pydoc_data.topics import topics

    text = evaluation_text()
    assert text == evaluation_text()
    assert len(text.text) > 100_000
    first, second = sorted(topics)[:2]
    assert text.text.startswith(topics[first].strip("\n") + "\n\n" + topics[second].strip("\n"))
    assert text.source.startswith("pydoc_data.topics, Python 3.")
    assert text.to_json()["sha256"] == text.sha256 and len(text.sha256) == 64


def test_evaluation_tokens_put_bos_first_when_the_model_adds_one() -> None:
    text = evaluation_text()

    def encode(string: str) -> list[int]:
        return [len(word) for word in string.split()[:3]]

    assert text.tokens(encode, bos_token=None) == [3, 8, 9]
    assert text.tokens(encode, bos_token=1) == [1, 3, 8, 9]
