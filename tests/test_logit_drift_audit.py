"""The pass audit reads a vocabulary output's drift in KL divergence and same-top-1 (as the LLM
accuracy measures do), not only cosine: the rule that picks such an output, the audit records of
a tiny Llama decoder through a lossy and a lossless pass, and `runner passes run`'s table."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from rich.console import Console
from small_decoders import SMALL_DECODER

from ir.drift import drift_record
from ir.logit_drift import is_vocabulary_output, token_perplexity
from passes.audit import PassRecord
from passes.instruments import NumericCheck
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline
from runner import passes_commands
from runner.cli import main
from runner.results.model import OutputDriftRecord
from zoo.builders.llama import build_decoder, seeded_weights

TINY = dataclasses.replace(SMALL_DECODER, num_layers=1)
# A prefill of 3 tokens after 2 cached ones, for 2 sequences: logits [2, 3, 64].
BINDINGS = {
    "batch": 2,
    "sequence_length": 3,
    "past_sequence_length": 2,
    "total_sequence_length": 5,
}
# dce drops only the dead node; mixed-precision needs its weights folded first
LOSSLESS_THEN_LOSSY = "dce,fold-constants,mixed-precision{dtype=float16}"


def _decoder() -> onnx.ModelProto:
    """The tiny decoder with one dead node (`Neg` of the logits, read by nothing), so `dce`
    changes the graph and leaves every number as it was."""
    model = build_decoder(TINY, seeded_weights(TINY))
    model.graph.node.append(onnx.helper.make_node("Neg", ["logits"], ["unused"]))
    return model


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("logits", np.zeros((1, 3, 64), np.float32), True),
        ("logits", np.zeros((4, 1000), np.float16), True),  # a classifier's logits
        ("logits", np.zeros((1, 64), np.int64), False),  # token ids, not scores
        ("logits", np.zeros(64, np.float32), False),  # no position axis
        ("logits", np.zeros((3, 1), np.float32), False),  # one token: no distribution
        ("logits", np.zeros((0, 64), np.float32), False),  # no position
        ("present.0.key", np.zeros((1, 2, 5, 8), np.float32), False),
        ("hidden_states", np.zeros((1, 3, 4096), np.float32), False),  # large, not scores
    ],
)
def test_a_vocabulary_output_is_named_logits_with_a_float_vocab_axis(
    name: str, value: np.ndarray, expected: bool
) -> None:
    assert is_vocabulary_output(name, value) is expected


def test_drift_record_adds_kl_to_the_vocabulary_output_only() -> None:
    # Two positions over 2 tokens; the candidate keeps the first and flips the second.
    reference = np.log(np.array([[[0.5, 0.5], [0.9, 0.1]]]))
    candidate = np.log(np.array([[[0.5, 0.5], [0.1, 0.9]]]))
    hidden = np.ones((1, 2, 2))
    logits, other = drift_record([reference, hidden], [candidate, hidden], ["logits", "h"])
    flipped = 0.9 * np.log(0.9 / 0.1) + 0.1 * np.log(0.1 / 0.9)
    assert logits["kl_divergence"]["mean"] == pytest.approx(flipped / 2, rel=1e-12)
    assert logits["kl_divergence"]["max"] == pytest.approx(flipped, rel=1e-12)
    assert logits["top1_agreement"] == 0.5
    assert "kl_divergence" not in other
    unnamed = drift_record([reference], [candidate])  # without names nothing is a vocabulary
    assert "kl_divergence" not in unnamed[0]
    reshaped = drift_record([reference], [candidate[0]], ["logits"])  # nothing to compare
    assert reshaped[0]["shape_match"] is False and "kl_divergence" not in reshaped[0]


def _audit(spec: str) -> dict[str, dict]:
    """The numeric check's records of `spec` on the tiny decoder, by pass name."""
    model = oir.serde.deserialize_model(_decoder())
    records = run_pipeline(model, parse_pipeline(spec), [NumericCheck(bindings=BINDINGS)]).records
    return {record.pass_name: record.numeric for record in records}


def test_a_lossy_pass_drifts_in_kl_and_a_lossless_one_does_not() -> None:
    numeric = _audit(LOSSLESS_THEN_LOSSY)
    for field in ("vs_input", "vs_previous"):
        logits, *presents = numeric["mixed-precision"][field]
        kl = logits["kl_divergence"]
        assert 0.0 < kl["mean"] <= kl["p99"] <= kl["max"] < 1e-3
        assert 0.0 <= logits["top1_agreement"] <= 1.0
        assert len(presents) == 2 and not any("kl_divergence" in d for d in presents)
    exact = numeric["dce"]["vs_input"][0]
    assert exact["kl_divergence"] == {"mean": 0.0, "p99": 0.0, "max": 0.0}
    assert exact["top1_agreement"] == 1.0
    # the results schema reads the record back whole
    record = OutputDriftRecord.from_json(exact)
    assert record.kl_divergence is not None and record.kl_divergence.max == 0.0
    assert record.to_json() == exact


def test_passes_run_table_reads_a_decoder_in_kl_and_its_audit_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # wide enough that no cell wraps, so the row can be read back
    monkeypatch.setattr(passes_commands, "console", lambda: Console(file=sys.stdout, width=160))
    source, output, audit = tmp_path / "llama.onnx", tmp_path / "out.onnx", tmp_path / "a.jsonl"
    onnx.save(_decoder(), source)
    args = ["passes", "run", str(source), "--pipeline", LOSSLESS_THEN_LOSSY]
    assert main([*args, "-o", str(output), "--audit", str(audit)]) == 0
    text = capsys.readouterr().out
    assert "KL mean" in text and "cosine" not in text
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    exact, _, lossy = (r["numeric"]["vs_input"][0] for r in records)
    assert exact["kl_divergence"]["max"] == 0.0 and exact["top1_agreement"] == 1.0
    assert lossy["kl_divergence"]["mean"] > 0.0
    rows = {_cells(line)[1]: _cells(line) for line in text.splitlines() if "│" in line}
    assert rows["dce"][-2:] == ["0", "1.0000"]
    kl, top1 = (f"{lossy['kl_divergence']['mean']:.3g}", f"{lossy['top1_agreement']:.4f}")
    assert rows["mixed-precision"][-2:] == [kl, top1]


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip("│").split("│")]


def _checked(*outputs: dict[str, object]) -> PassRecord:
    numeric = {"seed": 0, "vs_input": list(outputs)}
    return PassRecord(1, "p", {}, "a", "b", True, 1.0, (), (), extra={"numeric": numeric})


def test_table_reads_vocabulary_outputs_in_kl_and_other_models_in_cosine() -> None:
    kv_cache = {"max_abs": 0.5, "cosine": 0.9, "top1_agreement": 0.25}
    logits = {
        "max_abs": 0.125,
        "cosine": 0.99,
        "top1_agreement": 0.75,
        "kl_divergence": {"mean": 0.0123, "p99": 0.1, "max": 0.2},
    }
    decoder, encoder = _checked(logits, kv_cache), _checked(kv_cache)
    # max abs over every output; KL and top-1 from the vocabulary output alone
    assert passes_commands._worst_input_drift(decoder) == ("0.5", "0.0123", "0.7500")
    assert passes_commands._drift_heading([encoder, decoder]) == "KL mean"
    assert passes_commands._worst_input_drift(encoder) == ("0.5", "0.9000000", "0.2500")
    assert passes_commands._drift_heading([encoder]) == "cosine"


def test_token_perplexity_is_the_next_tokens_likelihood_by_hand() -> None:
    """Two positions over a 3-token vocabulary: position 0 gives the next token (id 2)
    probability e^2 / (1 + 1 + e^2); position 1 predicts nothing (it is the last)."""
    logits = np.array([[[0.0, 0.0, 2.0], [5.0, 0.0, 0.0]]], np.float32)
    ids = np.array([[1, 2]])
    expected = (2 + np.exp(2.0)) / np.exp(2.0)  # 1 / p of the one scored token
    assert token_perplexity(logits, ids) == pytest.approx(expected, rel=1e-6)
    assert token_perplexity(logits, ids[:, :1]) is None  # shapes do not pair
    assert token_perplexity(logits, np.array([[1, 7]])) is None  # id outside the vocabulary
    record = drift_record([logits], [logits * 0.5], ["logits"], ids)[0]
    change = record["perplexity"]
    assert change["reference"] == pytest.approx(expected, rel=1e-6)
    assert change["ratio"] == pytest.approx(change["candidate"] / change["reference"])
    assert "perplexity" not in drift_record([logits], [logits * 0.5], ["logits"])[0]
    assert OutputDriftRecord.from_json({"index": 0, **record}).perplexity is not None
