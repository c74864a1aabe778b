"""fuse-rotary: the rotate-half rotary embedding becomes com.microsoft RotaryEmbedding with stored
cos/sin tables (the graph before and the graph expected after, as ONNX text, each run on
onnxruntime with the same outputs); every skip says why; on the seeded decoder the fused model
gives the unfused logits and greedy tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fused_decoders import PADDED, fused, generator, greedy, op_counts, prefill, saved
from rewrite_cases import check_rewrite, check_skip, load_text
from small_decoders import small_decoder

from ir.model_io import load_model
from ir.reference import run_reference
from ir.verifier import verify
from passes.fusion.fuse_rotary import FuseRotary, FuseRotaryConfig
from passes.pipeline import PipelineError, parse_pipeline

pytest.importorskip("onnxruntime")

# Tables for 4 positions: enough for the 3 tokens, and small enough to write out.
ORT = FuseRotaryConfig(target="onnxruntime", max_position=4)
INPUTS = "float[1,2,3,4] x, int64[1,3] position_ids"
# 2 heads of 4 over 3 tokens; inverse frequencies 1 and 1/2 (base theta 4).
WEIGHTS = (
    "float[2] inv_freq = {1.0, 0.5}, int64[1] at2 = {2}, int64[1] at1 = {1}, "
    "int64[1] zero = {0}, int64[1] half = {2}, int64[1] end = {4}, int64[1] last = {-1}"
)
ANGLES = """
    pf = Cast <to = 1> (position_ids)
    pu = Unsqueeze(pf, at2)
    f = Mul(pu, inv_freq)
    a = Concat <axis = -1> (f, f)
    c = Cos(a)
    cu = Unsqueeze(c, at1)
    s = Sin(a)
    su = Unsqueeze(s, at1)
"""
HALVES = """
    lo = Slice(x, zero, half, last)
    hi = Slice(x, half, end, last)
    n = Neg(hi)
    r = Concat <axis = -1> (n, lo)
"""
ROTATE = """
    xc = Mul(x, cu)
    rs = Mul(r, su)
    y = Add(xc, rs)
"""
# cos and sin of p * [1, 1/2] for p = 0..3.
COS_TABLE = "1, 1, 0.5403023, 0.87758255, -0.41614684, 0.5403023, -0.9899925, 0.0707372"
SIN_TABLE = "0, 0, 0.84147096, 0.47942555, 0.9092974, 0.84147096, 0.14112, 0.997495"
NODES = "Mul+Slice+Neg+Slice+Concat+Mul+Add not fused: "


def _model(body: str, weights: str = WEIGHTS, inputs: str = INPUTS, microsoft: bool = False) -> str:
    imports = '"" : 14' + (', "com.microsoft" : 1' if microsoft else "")
    return f"""
        <ir_version: 8, opset_import: [{imports}]>
        g ({inputs}) => (float[1,2,3,4] y) <{weights}>
        {{
            {body}
        }}
    """


def _fused(cos: str, sin: str, rows: int) -> str:
    tables = f"float[{rows},2] cos_table = {{{cos}}}, float[{rows},2] sin_table = {{{sin}}}"
    return _model(
        "y = com.microsoft.RotaryEmbedding <interleaved = 0> (x, position_ids, cos_table, "
        "sin_table)",
        tables,
        microsoft=True,
    )


def _same_outputs(tmp_path: Path, before: str, after: str, positions: list[int]) -> None:
    feeds = {
        "x": np.random.default_rng(0).standard_normal((1, 2, 3, 4)).astype(np.float32),
        "position_ids": np.array([positions], np.int64),
    }
    want = run_reference(load_text(tmp_path / "want", before), feeds)
    got = run_reference(load_text(tmp_path / "got", after), feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_computed_cos_and_sin_become_stored_tables(tmp_path: Path) -> None:
    before = _model(ANGLES + HALVES + ROTATE)
    expected = _fused(COS_TABLE, SIN_TABLE, 4)
    result = check_rewrite(tmp_path, FuseRotary(ORT), before, expected)
    assert result.skipped == ()
    reasons = {(change.kind.value, change.reason) for change in result.changes}
    assert (
        "added-node",
        "7 nodes rotate 'x' (head 4, rotate-half) by cos/sin computed from 'position_ids' "
        "(base theta 4), tables for positions < 4",
    ) in reasons
    assert ("graph-io", "added initializer 'inv_freq.cos_cache' [4, 2]") in reasons
    removed = [change for change in result.changes if change.kind.value == "removed-node"]
    assert len(removed) == 7 + 8  # the rotation, and the cos/sin computation it alone read
    assert verify(load_text(tmp_path / "check", expected)) == []
    _same_outputs(tmp_path, before, expected, [2, 0, 3])


CACHED = """
    cg = Gather(cos_rows, position_ids)
    cu = Unsqueeze(cg, at1)
    sg = Gather(sin_rows, position_ids)
    su = Unsqueeze(sg, at1)
"""
SPLIT = """
    lo, hi = Split <axis = -1> (x, sizes)
    n = Neg(hi)
    r = Concat <axis = -1> (n, lo)
"""


def _cached_weights(cos_rows: str = "") -> str:
    """Cached [3, 4] tables (each frequency twice) of the first 3 positions."""
    cos = cos_rows or "1, 1, 1, 1, 0.5403023, 0.87758255, 0.5403023, 0.87758255, " + (
        "-0.41614684, 0.5403023, -0.41614684, 0.5403023"
    )
    sin = "0, 0, 0, 0, 0.84147096, 0.47942555, 0.84147096, 0.47942555, " + (
        "0.9092974, 0.84147096, 0.9092974, 0.84147096"
    )
    return (
        f"float[3,4] cos_rows = {{{cos}}}, float[3,4] sin_rows = {{{sin}}}, "
        "int64[1] at1 = {1}, int64[2] sizes = {2, 2}"
    )


def test_cached_tables_and_split_halves(tmp_path: Path) -> None:
    """Rows gathered from cached tables give their first halves, all 3 rows (max_position does
    not apply); the halves may come from one Split."""
    before = _model(CACHED + SPLIT + ROTATE, _cached_weights())
    expected = _fused(*(", ".join(table.split(", ")[:6]) for table in (COS_TABLE, SIN_TABLE)), 3)
    result = check_rewrite(tmp_path, FuseRotary(ORT), before, expected)
    assert any(
        change.reason.endswith(
            "by cos/sin gathered from 'cos_rows' at 'position_ids', tables for positions < 3"
        )
        for change in result.changes
    )
    _same_outputs(tmp_path, before, expected, [1, 0, 2])


def test_idempotent(tmp_path: Path) -> None:
    model = load_text(tmp_path, _model(ANGLES + HALVES + ROTATE))
    assert FuseRotary(ORT)(model).modified
    again = FuseRotary(ORT)(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


def _reason(tmp_path: Path, before: str, config: FuseRotaryConfig = ORT) -> str:
    (skip,) = check_skip(tmp_path, FuseRotary(config), before)
    return skip.reason


@pytest.mark.parametrize(
    ("body", "weights", "inputs", "reason"),
    [
        (
            ANGLES + HALVES.replace("(hi)", "(lo)").replace("(n, lo)", "(n, hi)") + ROTATE,
            WEIGHTS,
            INPUTS,
            "the first half is not elements 0..2 of the last axis",
        ),
        (
            ANGLES + HALVES + ROTATE,
            WEIGHTS.replace("float[2] inv_freq = {1.0, 0.5}, ", ""),
            f"{INPUTS}, float[2] inv_freq",
            "the inverse frequencies are not a constant",
        ),
        (
            ANGLES.replace("s = Sin(a)", "s = Sin(f)") + HALVES + ROTATE,
            WEIGHTS,
            INPUTS,
            "cos and sin are taken of different angles",
        ),
        (
            ANGLES + HALVES + ROTATE,
            WEIGHTS,
            "float[1,2,3,4] x, int32[1,3] position_ids",
            "positions 'position_ids' are not int64 [batch, seq] (RotaryEmbedding's position_ids)",
        ),
        (
            CACHED + SPLIT + ROTATE,
            _cached_weights("1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0, 0, 0, 0"),
            INPUTS,
            "table 'cos_rows' does not repeat each frequency",
        ),
    ],
    ids=["halves-swapped", "frequencies-not-constant", "other-angles", "int32-positions", "table"],
)
def test_sites_that_do_not_fit_are_skips(
    tmp_path: Path, body: str, weights: str, inputs: str, reason: str
) -> None:
    nodes = NODES if "Slice" in body else "Mul+Split+Neg+Concat+Mul+Add not fused: "
    assert _reason(tmp_path, _model(body, weights, inputs)) == nodes + reason


def test_no_target_is_a_skip(tmp_path: Path) -> None:
    assert _reason(tmp_path, _model(ANGLES + HALVES + ROTATE), FuseRotaryConfig()) == (
        f"{NODES}com.microsoft.RotaryEmbedding is not a standard ONNX op and no target is "
        "given (target=NAME)"
    )


def test_max_position_is_bounded() -> None:
    with pytest.raises(PipelineError, match="max_position"):
        parse_pipeline("fuse-rotary{max_position=0}")


def test_the_decoder_gives_the_unfused_logits_and_tokens(tmp_path: Path) -> None:
    """All 4 rotations (Q and K of 2 layers) fuse, reading one pair of stored tables; the cos/sin
    computation goes; prefill logits and 6 greedy tokens on a left-padded batch are the
    unfused model's."""
    reference, path = saved(small_decoder(), tmp_path / "reference")
    model = fused(
        small_decoder(), tmp_path / "fused", [FuseRotary(FuseRotaryConfig("onnxruntime"))]
    )
    before, after = op_counts(reference), op_counts(model)
    assert (sum(before.values()), sum(after.values())) == (243, 211)
    assert after["com.microsoft.RotaryEmbedding"] == 4
    assert (before - after)["Cos"] == 1 and after["Slice"] == 0
    tables = [name for name in model.graph.initializers if name.endswith("_cache")]
    assert sorted(tables) == ["inv_freq_5.cos_cache", "inv_freq_5.sin_cache"]
    assert model.graph.initializers["inv_freq_5.cos_cache"].shape == (8192, 4)
    want, got = prefill(reference, path), prefill(model, path)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        greedy(generator(model, path), 6), greedy(generator(reference, path), 6)
    )
    assert PADDED.mask[0].tolist() == [0, 0, 1, 1, 1]  # the first row is padded


@pytest.mark.slow
def test_smollm2_rotations_fuse_with_one_pair_of_tables(tmp_path: Path) -> None:
    """The real model: Q and K of 30 layers, base theta 100000, tables [8192, 32]; the
    left-padded prefill's logits are the unfused model's."""
    from zoo.resolve import resolve_model

    path = resolve_model("smollm2-135m")
    reference, model = load_model(path), load_model(path)
    result = FuseRotary(FuseRotaryConfig("onnxruntime"))(model)
    assert result.skipped == ()
    assert op_counts(model)["com.microsoft.RotaryEmbedding"] == 60
    assert "(base theta 100000)" in result.changes[-1].reason
    tables = [value for name, value in model.graph.initializers.items() if name.endswith("cache")]
    assert [table.shape for table in tables] == [(8192, 32), (8192, 32)]
    want, got = prefill(reference, path), prefill(model, path)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=0, atol=1e-3)
