"""The named decoder pipelines on the small seeded decoder, bound to onnxruntime as the bench
binds them: `llm` leaves every norm, rotary and attention fused with the logits and greedy
tokens of the unfused model on a left-padded batch; `llm-int8` and `llm-int4` store every
MatMul weight in MatMulNBits, the output projection at 8 bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ir.logit_drift import logit_drift
from passes.instruments import NumericCheck
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline
from passes.target_binding import bind_pipeline
from targets.reference_fallback import TargetFallback
from tests.fused_decoders import generator, greedy, op_counts, prefill, saved
from tests.small_decoders import small_decoder
from zoo.llm.decoder_io import decoder_signature
from zoo.llm.session_generation import PromptBatch, prefill_feeds

pytest.importorskip("onnxruntime")

MICROSOFT = "com.microsoft"


def _through(pipeline: str, folder: Path):
    model, path = saved(small_decoder(), folder)
    run_pipeline(model, parse_pipeline(bind_pipeline(pipeline, "onnxruntime")))
    return model, path


@pytest.fixture(scope="module")
def unfused(tmp_path_factory):
    return saved(small_decoder(), tmp_path_factory.mktemp("unfused"))


def test_llm_fuses_norms_rotary_and_attention_and_keeps_the_numbers(unfused, tmp_path) -> None:
    model, path = _through("llm", tmp_path)
    counts = op_counts(model)
    # 2 layers: 2 norms each plus the final one, the first plain, the rest with the residual
    assert (
        counts["SimplifiedLayerNormalization"]
        + counts[f"{MICROSOFT}.SkipSimplifiedLayerNormalization"]
        == 5
    )
    assert counts[f"{MICROSOFT}.RotaryEmbedding"] == 4  # Q and K per layer
    assert counts[f"{MICROSOFT}.GroupQueryAttention"] == 2
    assert counts["Softmax"] == 0 and counts["Pow"] == 0
    expected = prefill(*unfused)["logits"]
    np.testing.assert_allclose(prefill(model, path)["logits"], expected, atol=1e-5)
    np.testing.assert_array_equal(greedy(generator(model, path), 6), greedy(generator(*unfused), 6))


@pytest.mark.parametrize(("pipeline", "bits"), [("llm-int8", 8), ("llm-int4", 4)])
def test_llm_int_pipelines_store_every_matmul_weight_in_blocks(
    pipeline: str, bits: int, unfused, tmp_path
) -> None:
    model, path = _through(pipeline, tmp_path)
    nbits = [node for node in model.graph if node.op_type == "MatMulNBits"]
    # per layer: q, k, v, o, gate, up, down; then the tied output projection
    assert len(nbits) == 2 * 7 + 1
    assert [node.attributes["bits"].value for node in nbits][:-1] == [bits] * 14
    assert nbits[-1].attributes["bits"].value == 8  # the head stays at 8 bits
    assert op_counts(model)["MatMul"] == 0  # attention's products are inside its fused op
    drift = logit_drift(prefill(*unfused)["logits"], prefill(model, path)["logits"])
    assert drift.kl_mean < (1e-3 if bits == 8 else 0.5)


def test_a_check_fed_real_tokens_records_each_passs_perplexity_change(tmp_path) -> None:
    """The LLM bench hands its audit real text: each pass's record then has the perplexity of
    those tokens before and after, beside KL and same-top-1."""
    model, path = saved(small_decoder(), tmp_path)
    ids = np.array([[5, 17, 3, 42, 8, 60, 1, 9, 33, 4]], np.int64)
    feeds = prefill_feeds(decoder_signature(model, str(path)), PromptBatch(ids, np.ones_like(ids)))
    check = NumericCheck(runner=TargetFallback("onnxruntime"), feeds=feeds)
    result = run_pipeline(model, parse_pipeline(bind_pipeline("llm-int4", "onnxruntime")), [check])
    (quantize,) = [r for r in result.records if r.pass_name == "quantize-weights"]
    (logits,) = [d for d in quantize.extra["numeric"]["vs_input"] if "perplexity" in d]
    change = logits["perplexity"]
    assert change["ratio"] == pytest.approx(change["candidate"] / change["reference"])
    assert change["ratio"] != 1.0 and "kl_divergence" in logits
    (fusion,) = [r for r in result.records if r.pass_name == "fuse-gqa"]
    (exact,) = [d for d in fusion.extra["numeric"]["vs_input"] if "perplexity" in d]
    assert exact["perplexity"]["ratio"] == pytest.approx(1.0, abs=1e-5)
