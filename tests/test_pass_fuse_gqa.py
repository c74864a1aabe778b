"""fuse-gqa: attention over a past/present KV cache becomes com.microsoft GroupQueryAttention (or
MultiHeadAttention with past/present) with seqlens_k and total_sequence_length from the mask's
shape and the mask bias passed on (the graph before and the graph expected after, as ONNX text,
each run on onnxruntime with the same outputs); every skip says why; on the seeded decoder the
fused model gives the unfused logits, caches and greedy tokens, left padding included."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from fused_decoders import PADDED, fused, generator, greedy, op_counts, prefill, saved
from rewrite_cases import check_rewrite, check_skip, load_text
from small_decoders import SMALL_DECODER, small_decoder

from ir.capabilities import Capabilities, FusedOp
from ir.model_io import load_model
from ir.reference import run_reference
from ir.verifier import verify
from passes import target_capabilities
from passes.base import PassResult
from passes.fusion.fuse_gqa import FuseGqa, FuseGqaConfig
from passes.fusion.fuse_rotary import FuseRotary, FuseRotaryConfig
from zoo.builders.llama import build_decoder, seeded_weights

pytest.importorskip("onnxruntime")

ORT = FuseGqaConfig(target="onnxruntime")
# 2 query heads over 1 K/V head of 8 (GroupQueryAttention takes head sizes that are multiples
# of 8); 2 new tokens after 1 cached one (3 in all).
INPUTS = (
    "float[1,2,16] q, float[1,2,8] k, float[1,2,8] v, float[1,1,1,8] past_k, "
    "float[1,1,1,8] past_v, int64[1,3] attention_mask, float[1,1,2,3] bias"
)
OUTPUTS = "float[1,2,16] y, float[1,1,3,8] present_k, float[1,1,3,8] present_v"
WEIGHTS = (
    "int64[4] q_heads = {0, 0, 2, 8}, int64[4] kv_heads = {0, 0, 1, 8}, "
    "int64[1] at2 = {2}, int64[5] copies = {1, 1, 2, 1, 1}, int64[4] repeated = {1, 2, 3, 8}, "
    "float root = {4.0}, int64[3] merged = {0, 0, 16}"
)
SPLITS = """
    qr = Reshape(q, q_heads)
    q4 = Transpose <perm = [0, 2, 1, 3]> (qr)
    kr = Reshape(k, kv_heads)
    k4 = Transpose <perm = [0, 2, 1, 3]> (kr)
    vr = Reshape(v, kv_heads)
    v4 = Transpose <perm = [0, 2, 1, 3]> (vr)
"""
CACHE = """
    present_k = Concat <axis = 2> (past_k, k4)
    present_v = Concat <axis = 2> (past_v, v4)
"""
ATTENTION = """
    ku = Unsqueeze(present_k, at2)
    ke = Expand(ku, copies)
    kk = Reshape(ke, repeated)
    kt = Transpose <perm = [0, 1, 3, 2]> (kk)
    s = MatMul(q4, kt)
    ss = Div(s, root)
    a = Add(ss, bias)
    p = Softmax <axis = -1> (a)
    vu = Unsqueeze(present_v, at2)
    ve = Expand(vu, copies)
    vv = Reshape(ve, repeated)
    c = MatMul(p, vv)
"""
MERGE = """
    ct = Transpose <perm = [0, 2, 1, 3]> (c)
    y = Reshape(ct, merged)
"""
LENGTHS = """
    shape = Shape(attention_mask)
    one_index = Constant <value = int64 {1}> ()
    length = Gather <axis = 0> (shape, one_index)
    total = Cast <to = 6> (length)
    start = Constant <value = int64[1] {0}> ()
    end = Constant <value = int64[1] {1}> ()
    batch = Slice(shape, start, end)
    one = Constant <value = int32 {1}> ()
    last = Sub(total, one)
    seqlens = Expand(last, batch)
"""
GQA = (
    "com.microsoft.GroupQueryAttention <causal = 0, kv_num_heads = 1, num_heads = 2, scale = 0.25>"
)


def _model(
    body: str,
    *,
    inputs: str = INPUTS,
    outputs: str = OUTPUTS,
    weights: str = WEIGHTS,
    microsoft: bool = False,
) -> str:
    imports = '"" : 14' + (', "com.microsoft" : 1' if microsoft else "")
    initializers = f"<{weights}>" if weights else ""
    return f"""
        <ir_version: 8, opset_import: [{imports}]>
        g ({inputs}) => ({outputs}) {initializers}
        {{
            {body}
        }}
    """


def _feeds(inputs: str) -> dict[str, np.ndarray]:
    """Seeded values for the float inputs; a left-padded mask [0, 1, 1] and its causal bias."""
    rng = np.random.default_rng(0)
    feeds = {}
    for declared in inputs.split(", "):
        kind, name = declared.split(" ")
        dims = [int(dim) for dim in kind[kind.index("[") + 1 : -1].split(",")]
        feeds[name] = rng.standard_normal(dims).astype(np.float32)
    feeds["attention_mask"] = np.array([[0, 1, 1]], np.int64)
    feeds["bias"] = np.array([[[[-1e30, 0, -1e30], [-1e30, 0, 0]]]], np.float32)
    if "position_ids" in feeds:
        feeds["position_ids"] = np.array([[0, 1]], np.int64)
    return feeds


def _fuses(
    tmp_path: Path, config: FuseGqaConfig, before: str, expected: str, inputs: str = INPUTS
) -> PassResult:
    """The pass turns `before` into `expected`, which gives the same outputs on onnxruntime."""
    result = check_rewrite(tmp_path, FuseGqa(config), before, expected)
    assert result.skipped == ()
    fused_model = load_text(tmp_path / "fused", expected)
    assert verify(fused_model) == []
    feeds = _feeds(inputs)
    want = run_reference(load_text(tmp_path / "reference", before), feeds)
    for got, wanted in zip(run_reference(fused_model, feeds), want, strict=True):
        np.testing.assert_allclose(got, wanted, rtol=1e-5, atol=1e-6)
    return result


def test_splits_cache_and_merge_become_one_group_query_attention(tmp_path: Path) -> None:
    """Q, K and V go in as [batch, seq, hidden] (their head splits absorbed), the past as it is,
    the bias as attention_bias; the head merge goes; the presents keep their names."""
    expected = _model(
        f"{LENGTHS}\n y, present_k, present_v = {GQA} "
        "(q, k, v, past_k, past_v, seqlens, total, , , , bias)",
        weights="",
        microsoft=True,
    )
    _fuses(tmp_path, ORT, _model(SPLITS + CACHE + ATTENTION + MERGE), expected)


ROTARY_WEIGHTS = f"{WEIGHTS}, float[4,4] cos_cache = {{{', '.join(['0.5'] * 16)}}}, " + (
    f"float[4,4] sin_cache = {{{', '.join(['0.25'] * 16)}}}"
)


def test_a_rotary_on_the_split_moves_and_other_layouts_are_converted(tmp_path: Path) -> None:
    """RotaryEmbedding of Q's head split is moved onto Q; V comes in as [B, N, S, H] and is
    converted; with no head merge the output is converted back to [B, N, S, H]."""
    inputs = INPUTS.replace("float[1,2,8] v", "float[1,1,2,8] v4") + ", int64[1,2] position_ids"
    rotary = "com.microsoft.RotaryEmbedding <interleaved = 0>"
    before = _model(
        SPLITS.replace("q4 = ", "qs = ")
        .replace("vr = Reshape(v, kv_heads)\n", "")
        .replace("v4 = Transpose <perm = [0, 2, 1, 3]> (vr)\n", "")
        + f"q4 = {rotary} (qs, position_ids, cos_cache, sin_cache)\n"
        + CACHE
        + ATTENTION,
        inputs=inputs,
        outputs=OUTPUTS.replace("float[1,2,16] y", "float[1,2,2,8] c"),
        weights=ROTARY_WEIGHTS,
        microsoft=True,
    )
    expected = _model(
        f"""{LENGTHS}
        qr = {rotary} (q, position_ids, cos_cache, sin_cache)
        vt = Transpose <perm = [0, 2, 1, 3]> (v4)
        flat = Constant <value = int64[3] {{0, 0, -1}}> ()
        vf = Reshape(vt, flat)
        o, present_k, present_v = {GQA} (qr, k, vf, past_k, past_v, seqlens, total, , , , bias)
        heads = Constant <value = int64[4] {{0, 0, 2, 8}}> ()
        o4 = Reshape(o, heads)
        c = Transpose <perm = [0, 2, 1, 3]> (o4)
        """,
        inputs=inputs,
        outputs=OUTPUTS.replace("float[1,2,16] y", "float[1,2,2,8] c"),
        weights=ROTARY_WEIGHTS,
        microsoft=True,
    )
    _fuses(tmp_path, ORT, before, expected, inputs)


def _declare(monkeypatch: pytest.MonkeyPatch, *declared: FusedOp) -> FuseGqaConfig:
    """A config for a target whose capabilities declare only `declared`."""
    capabilities = Capabilities(None, frozenset({"float32"}), fused_ops=declared)
    monkeypatch.setattr(target_capabilities, "capabilities_of", lambda name: capabilities)
    return FuseGqaConfig(target="reference")


MHA_KV_CACHE = FusedOp(
    "MultiHeadAttention", "com.microsoft", variants=frozenset({"bias", "kv-cache"})
)
# One K/V head per query head: 2 of each, no repeat.
MHA_INPUTS = INPUTS.replace("float[1,2,8] k, float[1,2,8] v", "float[1,2,16] k, float[1,2,16] v")
MHA_INPUTS = MHA_INPUTS.replace("float[1,1,1,8] past", "float[1,2,1,8] past")
MHA_OUTPUTS = OUTPUTS.replace("float[1,1,3,8]", "float[1,2,3,8]")


def _one_head_each(body: str) -> str:
    """`body` with 2 K/V heads and no repeat_kv."""
    body = body.replace("Reshape(k, kv_heads)", "Reshape(k, q_heads)")
    body = body.replace("Reshape(v, kv_heads)", "Reshape(v, q_heads)")
    for repeat in ("ku = Unsqueeze(present_k, at2)", "ke = Expand(ku, copies)"):
        body = body.replace(repeat, "")
    for repeat in ("vu = Unsqueeze(present_v, at2)", "ve = Expand(vu, copies)"):
        body = body.replace(repeat, "")
    body = body.replace("kk = Reshape(ke, repeated)", "")
    body = body.replace("vv = Reshape(ve, repeated)", "")
    return body.replace("(kk)", "(present_k)").replace("MatMul(p, vv)", "MatMul(p, present_v)")


def test_multi_head_attention_where_only_it_is_declared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _declare(monkeypatch, MHA_KV_CACHE)
    before = _model(
        _one_head_each(SPLITS + CACHE + ATTENTION + MERGE),
        inputs=MHA_INPUTS,
        outputs=MHA_OUTPUTS,
    )
    expected = _model(
        "y, present_k, present_v = com.microsoft.MultiHeadAttention <num_heads = 2, "
        "scale = 0.25> (q, k, v, , , bias, past_k, past_v)",
        inputs=MHA_INPUTS,
        outputs=MHA_OUTPUTS,
        weights="",
        microsoft=True,
    )
    result = _fuses(tmp_path, config, before, expected, MHA_INPUTS)
    # The first rule's refusal (no GroupQueryAttention declared) is no skip once the second fuses.
    assert {change.rule for change in result.changes} == {"multi-head-attention-kv-cache"}


BEFORE = _model(SPLITS + CACHE + ATTENTION + MERGE)


def _reasons(tmp_path: Path, before: str, config: FuseGqaConfig = ORT) -> list[str]:
    return [f"{skip.rule}: {skip.reason}" for skip in check_skip(tmp_path, FuseGqa(config), before)]


def test_no_target_is_a_skip_of_both_rules(tmp_path: Path) -> None:
    assert _reasons(tmp_path, BEFORE, FuseGqaConfig()) == [
        f"{rule}: com.microsoft.{op} is not a standard ONNX op and no target is given (target=NAME)"
        for rule, op in (
            ("group-query-attention", "GroupQueryAttention"),
            ("multi-head-attention-kv-cache", "MultiHeadAttention"),
        )
    ]


def test_declarations_without_the_kv_cache_variant_or_for_grouped_heads_are_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _declare(monkeypatch, FusedOp("GroupQueryAttention", "com.microsoft"), MHA_KV_CACHE)
    assert _reasons(tmp_path, BEFORE, config) == [
        "group-query-attention: target 'reference' declares "
        "com.microsoft.GroupQueryAttention without the 'kv-cache' variant",
        "multi-head-attention-kv-cache: MultiHeadAttention keeps one K/V head per query head; "
        "the cache has 1 K/V heads for 2 query heads",
    ]


@pytest.mark.parametrize(
    ("before", "reason"),
    [
        (
            _model(
                SPLITS + CACHE + ATTENTION.replace("a = Add(ss, bias)", "a = Identity(ss)") + MERGE
            ),
            "the Softmax input is no scores plus a mask bias (causal attention adds one)",
        ),
        (
            _model(SPLITS + CACHE + ATTENTION.replace("<axis = -1>", "<axis = 2>") + MERGE),
            "Softmax runs over axis 2, not the last",
        ),
        (
            _model(
                SPLITS + CACHE + ATTENTION + MERGE,
                inputs=INPUTS.replace("float[1,1,1,4] past_k, ", ""),
                weights=f"{WEIGHTS}, float[1,1,1,8] past_k = {{1, 2, 3, 4, 5, 6, 7, 8}}",
            ),
            "the past keys 'past_k' are not a graph input",
        ),
        (
            _model(SPLITS + CACHE + ATTENTION + "pp = Identity(p)\n" + MERGE),
            "the probabilities are not read by one MatMul with the values",
        ),
        (
            _model(
                SPLITS
                + CACHE.replace("present_v = Concat <axis = 2> (past_v, v4)", "")
                + ATTENTION.replace("(present_v, at2)", "(v4, at2)")
                + MERGE,
                outputs="float[1,2,16] y, float[1,1,3,8] present_k",
            ),
            "the values are not Concat(past, new) along the sequence axis",
        ),
        (
            _model(
                SPLITS + CACHE + ATTENTION + MERGE,
                inputs=INPUTS.replace("int64[1,3] attention_mask", "int64[1,3] mask"),
            ),
            "the graph has no input 'attention_mask' to take the sequence lengths from",
        ),
    ],
    ids=["no-bias", "softmax-axis", "past-constant", "probs-shared", "values-uncached", "no-mask"],
)
def test_sites_that_do_not_fit_are_skips(tmp_path: Path, before: str, reason: str) -> None:
    assert _reasons(tmp_path, before)[0] == f"group-query-attention: {reason}"


def test_a_head_size_not_a_multiple_of_8_is_a_skip(tmp_path: Path) -> None:
    small_heads = dataclasses.replace(SMALL_DECODER, hidden_size=16)  # 4 heads of 4
    model, _ = saved(build_decoder(small_heads, seeded_weights(small_heads)), tmp_path)
    result = FuseGqa(ORT)(model)
    assert not result.modified
    assert {skip.reason for skip in result.skipped if skip.rule == "group-query-attention"} == {
        "GroupQueryAttention takes head sizes that are multiples of 8, not 4"
    }


def test_idempotent(tmp_path: Path) -> None:
    model = load_text(tmp_path, BEFORE)
    assert FuseGqa(ORT)(model).modified
    again = FuseGqa(ORT)(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def _same_decoding(tmp_path: Path, proto, passes, counts: tuple[int, int]) -> None:
    """The passes fuse `proto` from `counts[0]` to `counts[1]` nodes; the fused model's prefill
    outputs on the left-padded batch (every position, padding included, and every cache
    entry) and 6 greedy tokens are the unfused model's."""
    reference, path = saved(proto, tmp_path / "reference")
    model = fused(proto, tmp_path / "fused", passes)
    assert (len(reference.graph), len(model.graph)) == counts
    want, got = prefill(reference, path), prefill(model, path)
    assert list(got) == list(want)  # logits and present.N.key|value, in the graph's order
    for name, wanted in want.items():
        np.testing.assert_allclose(got[name], wanted, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(
        greedy(generator(model, path), 6), greedy(generator(reference, path), 6)
    )


def test_the_decoder_fuses_to_group_query_attention_exactly(tmp_path: Path) -> None:
    """Both layers' attention fuses; seqlens_k and total_sequence_length are computed once."""
    model = fused(small_decoder(), tmp_path / "counted", [FuseGqa(ORT)])
    counts = op_counts(model)
    assert counts["com.microsoft.GroupQueryAttention"] == 2
    assert (counts["Softmax"], counts["Expand"], counts["Cast"]) == (0, 1, 3)
    _same_decoding(tmp_path, small_decoder(), [FuseGqa(ORT)], (243, 175))


def test_after_fuse_rotary_the_rotary_moves_onto_the_projections(tmp_path: Path) -> None:
    passes = [FuseRotary(FuseRotaryConfig("onnxruntime")), FuseGqa(ORT)]
    model = fused(small_decoder(), tmp_path / "counted", passes)
    counts = op_counts(model)
    assert counts["com.microsoft.RotaryEmbedding"] == 4 and counts["Transpose"] == 1
    assert PADDED.mask[0].tolist() == [0, 0, 1, 1, 1]  # the first row is padded
    _same_decoding(tmp_path, small_decoder(), passes, (243, 95))


def test_one_kv_head_per_query_head_fuses_to_multi_head_attention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _declare(monkeypatch, MHA_KV_CACHE)
    ungrouped = dataclasses.replace(SMALL_DECODER, num_kv_heads=SMALL_DECODER.num_heads)
    proto = build_decoder(ungrouped, seeded_weights(ungrouped))
    model = fused(proto, tmp_path / "counted", [FuseGqa(config)])
    assert op_counts(model)["com.microsoft.MultiHeadAttention"] == 2
    _same_decoding(tmp_path, proto, [FuseGqa(config)], (203, 165))


@pytest.mark.slow
def test_smollm2_fuses_every_layer_exactly(tmp_path: Path) -> None:
    """The real model: 60 rotations and 30 attentions fuse; the left-padded prefill's logits
    and caches and 4 greedy tokens are the unfused model's."""
    from zoo.resolve import resolve_model

    path = resolve_model("smollm2-135m")
    reference = load_model(path)
    model = load_model(path)
    for rewrite in (FuseRotary(FuseRotaryConfig("onnxruntime")), FuseGqa(ORT)):
        assert rewrite(model).skipped == ()
    counts = op_counts(model)
    assert counts["com.microsoft.RotaryEmbedding"] == 60
    assert counts["com.microsoft.GroupQueryAttention"] == 30
    assert (counts["Softmax"], counts["Transpose"]) == (0, 1)
    want, got = prefill(reference, path), prefill(model, path)
    for name, wanted in want.items():
        np.testing.assert_allclose(got[name], wanted, rtol=0, atol=1e-3, err_msg=name)
    np.testing.assert_array_equal(
        greedy(generator(model, path), 4), greedy(generator(reference, path), 4)
    )
