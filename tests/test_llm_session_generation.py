"""Greedy generation on a target's session (zoo/llm/session_generation.py) on the small seeded
decoder: the tokens are the numpy reference's, a left-padded batch gives each row what it
gives alone, the clock records one prefill and one time per later step; the decoder's cache
layout is read from its graph, and a model that is not a decoder is refused in one line."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from ir.errors import AsicperfError
from ir.model_io import load_model
from ir.seeded_inputs import dim_sizes, seeded_inputs
from targets.executable import compile_model
from targets.registry import get_target
from tests.bench_models import save_gemm_relu
from tests.small_decoders import SMALL_DECODER, small_decoder
from zoo.builders.llama import seeded_weights
from zoo.llm.decoder_io import decoder_signature
from zoo.llm.numpy_decoder import NumpyDecoder
from zoo.llm.session_generation import SessionGenerator, StepClock, left_padded

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> SessionGenerator:
    path = tmp_path_factory.mktemp("decoder") / "small.onnx"
    onnx.save(small_decoder(), path)
    model = load_model(path)
    executable = compile_model(get_target("onnxruntime"), model)
    return SessionGenerator(
        executable.session(2), executable.output_names, decoder_signature(model, str(path))
    )


def _numpy_greedy(prompt: list[int], count: int) -> list[int]:
    decoder = NumpyDecoder(SMALL_DECODER, seeded_weights(SMALL_DECODER))
    return decoder.generate_greedy(prompt, max_new_tokens=count)


def test_the_signature_is_read_from_the_graph(tmp_path) -> None:
    path = tmp_path / "small.onnx"
    onnx.save(small_decoder(), path)
    signature = decoder_signature(load_model(path), str(path))
    assert (signature.layers, signature.kv_heads, signature.head_dim) == (2, 2, 8)
    assert signature.vocab_size == 64
    # 2 sequences x 10 tokens x (2 layers x key and value) x 2 heads x 8 x 4 bytes
    assert signature.kv_cache_bytes(2, 10) == 2 * 10 * 4 * 2 * 8 * 4


def test_a_model_without_a_cache_is_refused_in_one_line(tmp_path) -> None:
    path = save_gemm_relu(tmp_path / "mlp.onnx")
    with pytest.raises(
        AsicperfError, match=r"mlp.onnx: not a decoder with a KV cache: no input_ids"
    ):
        decoder_signature(load_model(path), str(path))


def test_greedy_tokens_are_the_numpy_references(generator: SessionGenerator) -> None:
    prompt = [5, 17, 3, 42, 8]
    steps = list(generator.generate(left_padded([prompt], 0), 6))
    assert [step.shape for step in steps] == [(1, 1)] * 6
    assert [int(step[0, 0]) for step in steps] == _numpy_greedy(prompt, 6)


def test_a_left_padded_row_generates_what_it_does_alone(generator: SessionGenerator) -> None:
    short, long = [9, 4, 33], [5, 17, 3, 42, 8]
    batch = left_padded([short, long], pad_id=0)
    assert batch.mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    steps = np.concatenate(list(generator.generate(batch, 5)), axis=1)
    assert steps[0].tolist() == _numpy_greedy(short, 5)
    assert steps[1].tolist() == _numpy_greedy(long, 5)


def test_the_clock_has_one_prefill_and_a_time_per_later_step(generator) -> None:
    clock = StepClock()
    list(generator.generate(left_padded([[1, 2, 3]], 0), 4, clock))
    assert len(clock.prefill_ms) == 1 and len(clock.decode_ms) == 3
    assert all(ms > 0 for ms in clock.prefill_ms + clock.decode_ms)


def test_logits_are_every_positions_from_an_empty_cache(generator: SessionGenerator) -> None:
    ids = np.array([[5, 17, 3, 42], [9, 4, 33, 1]])
    logits = generator.logits(ids)
    decoder = NumpyDecoder(SMALL_DECODER, seeded_weights(SMALL_DECODER))
    expected, _ = decoder.forward(ids)
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_zero_new_tokens_is_refused(generator: SessionGenerator) -> None:
    with pytest.raises(AsicperfError, match="generation of 0 tokens: at least 1 needed"):
        list(generator.generate(left_padded([[1, 2]], 0), 0))


def test_seeded_inputs_give_a_decoder_a_mask_over_its_cache_and_new_tokens(tmp_path) -> None:
    """Unbound, the total length is the past plus the new tokens, not 1: a numeric check's
    seeded step is one a decoder can take."""
    path = tmp_path / "small.onnx"
    onnx.save(small_decoder(), path)
    model = load_model(path)
    assert dim_sizes(model)["total_sequence_length"] == 2
    sizes = dim_sizes(model, {"past_sequence_length": 3, "sequence_length": 2})
    assert (sizes["batch"], sizes["total_sequence_length"]) == (1, 5)
    assert dim_sizes(model, {"total_sequence_length": 7})["total_sequence_length"] == 7
    feeds = seeded_inputs(model, 0, {"past_sequence_length": 3})
    assert feeds["attention_mask"].shape == (1, 4)
    assert feeds["past_key_values.0.key"].shape == (1, 2, 3, 8)
