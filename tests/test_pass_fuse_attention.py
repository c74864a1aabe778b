"""fuse-attention: scaled dot-product attention becomes com.microsoft MultiHeadAttention, the
head split and merge absorbed or converted (the graph before and the graph expected after, as
ONNX text, each run on onnxruntime with the same outputs); every skip says why."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from bert_like import assert_close, bert_like_feeds, build_bert_like, load, outputs_of
from rewrite_cases import check_rewrite, check_skip, load_text

from ir.capabilities import Capabilities, FusedOp
from ir.seeded_inputs import seeded_inputs
from ir.verifier import verify
from passes import target_capabilities
from passes.audit import Change, ChangeKind
from passes.fusion.fuse_attention import FuseAttention, FuseAttentionConfig
from passes.instruments import VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import parse_pipeline
from passes.target_binding import bind_pipeline

# onnxruntime declares com.microsoft MultiHeadAttention with an attention bias ("bias").
ORT = FuseAttentionConfig(target="onnxruntime")

# batch 2, heads 2, 4 queries, 6 keys, head size 8 (hidden 16): cross-attention, so the query
# and key lengths cannot be confused.
CORE_INPUTS = "float[2,2,4,8] q, float[2,2,6,8] k, float[2,2,6,8] v, float[2,1,1,6] mask"
SPLIT_INPUTS = "float[2,4,16] q, float[2,6,16] k, float[2,6,16] v"
SCALE = "float scale = {0.35}"
SPLIT_SHAPES = "int64[4] split = {0, 0, 2, 8}, int64[3] merge = {0, 0, 16}"


def _model(
    inputs: str,
    body: str,
    *,
    output: str = "float[2,2,4,8] y",
    weights: str = SCALE,
    opset: int = 14,
    microsoft: bool = False,
) -> str:
    """ONNX text of graph (`inputs`) => (`output`) with `body` and initializers `weights`;
    `microsoft` imports com.microsoft, as a fused graph does."""
    imports = f'"" : {opset}' + (', "com.microsoft" : 1' if microsoft else "")
    initializers = f"<{weights}>" if weights else ""
    return f"""
        <ir_version: 8, opset_import: [{imports}]>
        g ({inputs}) => ({output}) {initializers}
        {{
            {body}
        }}
    """


def _core(axis: str = "<axis = -1>", *, masked: bool = True) -> str:
    """Softmax(q @ Transpose(k) * scale + mask) @ v on 4-D inputs (without `+ mask` unless
    `masked`); `axis` is Softmax's."""
    softmax = (
        f"a = Add(ss, mask)\n p = Softmax {axis} (a)" if masked else f"p = Softmax {axis} (ss)"
    )
    return f"""
        kt = Transpose <perm = [0, 1, 3, 2]> (k)
        s = MatMul(q, kt)
        ss = Mul(s, scale)
        {softmax}
        y = MatMul(p, v)
    """


def _fuses(
    tmp_path: Path, before: str, expected: str, bindings: Mapping[str, int] | None = None
) -> None:
    """fuse-attention turns `before` into `expected`, which gives the same outputs on
    onnxruntime (symbolic dims bound by `bindings`)."""
    result = check_rewrite(tmp_path, FuseAttention(ORT), before, expected)
    assert result.skipped == ()
    reference = load_text(tmp_path / "reference", before)
    feeds = seeded_inputs(reference, bindings=bindings)
    fused = load_text(tmp_path / "fused", expected)
    assert verify(fused) == []
    assert_close(outputs_of(reference, feeds), outputs_of(fused, feeds))


def test_core_gets_converters_and_the_one_row_mask_is_expanded(tmp_path: Path) -> None:
    """Q is transposed and reshaped in, K (behind its transpose to K^T) and V go in as
    [B, N, T, H], the [B, 1, 1, T] mask is expanded over the 4 queries, the output is reshaped
    and transposed back."""
    expected = _model(
        CORE_INPUTS,
        """
        qt = Transpose <perm = [0, 2, 1, 3]> (q)
        flat = Constant <value = int64[3] {0, 0, -1}> ()
        qf = Reshape(qt, flat)
        rows = Constant <value = int64[4] {1, 1, 4, 1}> ()
        bias = Expand(mask, rows)
        o = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 0.35> (qf, k, v, , , bias)
        heads = Constant <value = int64[4] {0, 0, 2, -1}> ()
        o4 = Reshape(o, heads)
        y = Transpose <perm = [0, 2, 1, 3]> (o4)
        """,
        weights="",
        microsoft=True,
    )
    _fuses(tmp_path, _model(CORE_INPUTS, _core()), expected)


def test_head_split_and_merge_are_absorbed(tmp_path: Path) -> None:
    """[B, S, hidden] in and out: the head splits (K^T in one Transpose), the Div scale and the
    head merge all go into one MultiHeadAttention on q, k and v."""
    before = _model(
        SPLIT_INPUTS,
        """
        qr = Reshape(q, split)
        q4 = Transpose <perm = [0, 2, 1, 3]> (qr)
        kr = Reshape(k, split)
        kt = Transpose <perm = [0, 2, 3, 1]> (kr)
        vr = Reshape(v, split)
        v4 = Transpose <perm = [0, 2, 1, 3]> (vr)
        s = MatMul(q4, kt)
        ss = Div(s, root)
        p = Softmax <axis = 3> (ss)
        c = MatMul(p, v4)
        ct = Transpose <perm = [0, 2, 1, 3]> (c)
        y = Reshape(ct, merge)
        """,
        output="float[2,4,16] y",
        weights=f"float root = {{2.828427}}, {SPLIT_SHAPES}",
    )
    expected = _model(
        SPLIT_INPUTS,
        "y = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 0.353553> (q, k, v)",
        output="float[2,4,16] y",
        weights="",
        microsoft=True,
    )
    _fuses(tmp_path, before, expected)


def test_key_split_then_transpose_and_a_scale_on_the_left(tmp_path: Path) -> None:
    """K's head split then its transpose to K^T are absorbed too; Mul(scale, scores) is the
    same scale; a mask with a row per query goes in as it is."""
    inputs = f"{SPLIT_INPUTS}, float[2,1,4,6] mask"
    before = _model(
        inputs,
        """
        qr = Reshape(q, split)
        q4 = Transpose <perm = [0, 2, 1, 3]> (qr)
        kr = Reshape(k, split)
        k4 = Transpose <perm = [0, 2, 1, 3]> (kr)
        kt = Transpose <perm = [0, 1, 3, 2]> (k4)
        vr = Reshape(v, split)
        v4 = Transpose <perm = [0, 2, 1, 3]> (vr)
        s = MatMul(q4, kt)
        ss = Mul(scale, s)
        a = Add(ss, mask)
        p = Softmax(a)
        c = MatMul(p, v4)
        ct = Transpose <perm = [0, 2, 1, 3]> (c)
        y = Reshape(ct, merge)
        """,
        output="float[2,4,16] y",
        weights=f"{SCALE}, {SPLIT_SHAPES}",
    )
    expected = _model(
        inputs,
        "y = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 0.35> (q, k, v, , , mask)",
        output="float[2,4,16] y",
        weights="",
        microsoft=True,
    )
    _fuses(tmp_path, before, expected)


def test_key_without_split_keeps_the_value_split(tmp_path: Path) -> None:
    """K^T comes in as is: K and V must share a layout, so both go in as [B, N, T, H] (K^T
    transposed back) and V's head split stays; Q's split is absorbed; no scale is scale 1; the
    [1, N, S, T] mask goes in unexpanded."""
    inputs = "float[2,4,16] q, float[2,2,8,6] kt, float[2,6,16] v, float[1,2,4,6] mask"
    before = _model(
        inputs,
        """
        vr = Reshape(v, split)
        v4 = Transpose <perm = [0, 2, 1, 3]> (vr)
        qr = Reshape(q, split)
        q4 = Transpose <perm = [0, 2, 1, 3]> (qr)
        s = MatMul(q4, kt)
        a = Add(mask, s)
        p = Softmax(a)
        y = MatMul(p, v4)
        """,
        weights=SPLIT_SHAPES,
    )
    expected = _model(
        inputs,
        """
        vr = Reshape(v, split)
        v4 = Transpose <perm = [0, 2, 1, 3]> (vr)
        k = Transpose <perm = [0, 1, 3, 2]> (kt)
        o = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 1.0> (q, k, v4, , , mask)
        heads = Constant <value = int64[4] {0, 0, 2, -1}> ()
        o4 = Reshape(o, heads)
        y = Transpose <perm = [0, 2, 1, 3]> (o4)
        """,
        weights="int64[4] split = {0, 0, 2, 8}",
        microsoft=True,
    )
    _fuses(tmp_path, before, expected)


def test_a_symbolic_query_length_expands_the_mask_at_run_time(tmp_path: Path) -> None:
    """Shape inference cannot tell the mask rows from the queries: the row count comes from
    Shape(flat Q) when the model runs."""
    inputs = "float[2,2,S,8] q, float[2,2,6,8] k, float[2,2,6,8] v, float[2,1,1,6] mask"
    expected = _model(
        inputs,
        """
        qt = Transpose <perm = [0, 2, 1, 3]> (q)
        flat = Constant <value = int64[3] {0, 0, -1}> ()
        qf = Reshape(qt, flat)
        qshape = Shape(qf)
        at = Constant <value = int64[1] {1}> ()
        rows = Gather <axis = 0> (qshape, at)
        ones = Constant <value = int64[2] {1, 1}> ()
        one = Constant <value = int64[1] {1}> ()
        target = Concat <axis = 0> (ones, rows, one)
        bias = Expand(mask, target)
        o = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 0.35> (qf, k, v, , , bias)
        heads = Constant <value = int64[4] {0, 0, 2, -1}> ()
        o4 = Reshape(o, heads)
        y = Transpose <perm = [0, 2, 1, 3]> (o4)
        """,
        output="float[2,2,S,8] y",
        weights="",
        microsoft=True,
    )
    before = _model(inputs, _core(), output="float[2,2,S,8] y")
    _fuses(tmp_path, before, expected, bindings={"S": 4})


def test_a_shared_shape_computation_stays(tmp_path: Path) -> None:
    """One computed split shape for Q, K and V serves no single Reshape alone: it stays, the
    splits around it are absorbed."""
    inputs = "float[2,4,16] q, float[2,4,16] k, float[2,4,16] v"
    shape = """
        qs = Shape(q)
        lead = Gather(qs, leading)
        shared = Concat <axis = 0> (lead, per_head)
    """
    before = _model(
        inputs,
        f"""
        {shape}
        qr = Reshape(q, shared)
        q4 = Transpose <perm = [0, 2, 1, 3]> (qr)
        kr = Reshape(k, shared)
        kt = Transpose <perm = [0, 2, 3, 1]> (kr)
        vr = Reshape(v, shared)
        v4 = Transpose <perm = [0, 2, 1, 3]> (vr)
        s = MatMul(q4, kt)
        p = Softmax(s)
        c = MatMul(p, v4)
        ct = Transpose <perm = [0, 2, 1, 3]> (c)
        y = Reshape(ct, merge)
        """,
        output="float[2,4,16] y",
        weights="int64[2] leading = {0, 1}, int64[2] per_head = {2, 8}, "
        "int64[3] merge = {0, 0, 16}",
    )
    expected = _model(
        inputs,
        f"""
        {shape}
        y = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 1.0> (q, k, v)
        """,
        output="float[2,4,16] y",
        weights="int64[2] leading = {0, 1}, int64[2] per_head = {2, 8}",
        microsoft=True,
    )
    _fuses(tmp_path, before, expected)


def test_a_core_in_a_branch_leaves_the_outer_head_split(tmp_path: Path) -> None:
    """Attention inside an If branch on a Q split outside it: the branch's nodes are fused, the
    outer split stays (it belongs to another graph) and Q is converted inside."""
    inputs = "float[2,4,16] q, float[2,2,6,8] k, float[2,2,6,8] v, float[2,1,1,6] mask"

    def model(branch: str, microsoft: bool) -> str:
        return _model(
            inputs,
            f"""
            qr = Reshape(q, split)
            q4 = Transpose <perm = [0, 2, 1, 3]> (qr)
            y = If (cond) <
                then_branch = then_g () => (float[2,2,4,8] t) {{ {branch} }},
                else_branch = else_g () => (float[2,2,4,8] e) {{ e = Identity(q4) }}
            >
            """,
            weights=f"{SCALE}, bool cond = {{1}}, int64[4] split = {{0, 0, 2, 8}}",
            microsoft=microsoft,
        )

    before = model(_core().replace("(q, kt)", "(q4, kt)").replace("y = ", "t = "), False)
    expected = model(
        """
        qt = Transpose <perm = [0, 2, 1, 3]> (q4)
        flat = Constant <value = int64[3] {0, 0, -1}> ()
        qf = Reshape(qt, flat)
        rows = Constant <value = int64[4] {1, 1, 4, 1}> ()
        bias = Expand(mask, rows)
        o = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 0.35> (qf, k, v, , , bias)
        heads = Constant <value = int64[4] {0, 0, 2, -1}> ()
        o4 = Reshape(o, heads)
        t = Transpose <perm = [0, 2, 1, 3]> (o4)
        """,
        True,
    )
    _fuses(tmp_path, before, expected)


def test_the_audit_records_one_attention_replacing_every_node(tmp_path: Path) -> None:
    model = load_text(tmp_path, _model(CORE_INPUTS, _core()))
    result = FuseAttention(ORT)(model)
    reason = "6 nodes compute 2-head attention (K and V as [batch, heads, seq, head])"
    replaced = tuple(f"n{index}" for index in range(6))
    added = [f"n{index}" for index in range(6, 15)]
    assert result.changes == (
        Change(ChangeKind.GRAPH_IO, (), "attention", "imported opset com.microsoft 1"),
        *(
            Change(ChangeKind.ADDED_NODE, (node,), "attention", reason, replaces=replaced)
            for node in added
        ),
        *(Change(ChangeKind.REMOVED_NODE, (node,), "attention", reason) for node in replaced),
    )


def test_idempotent(tmp_path: Path) -> None:
    model = load_text(tmp_path, _model(CORE_INPUTS, _core()))
    assert FuseAttention(ORT)(model).modified
    again = FuseAttention(ORT)(model)
    assert (again.modified, again.changes, again.skipped) == (False, (), ())


# --- skips ---------------------------------------------------------------------------------

MASKED = "MatMul+Mul+Add+Softmax+MatMul not fused: "


def _skip(tmp_path: Path, before: str, config: FuseAttentionConfig = ORT) -> str:
    """The one skip reason of fuse-attention on `before`, which it leaves as it was."""
    (skip,) = check_skip(tmp_path, FuseAttention(config), before)
    assert skip.rule == "attention"
    return skip.reason


def test_no_target_emits_no_contrib_op(tmp_path: Path) -> None:
    assert _skip(tmp_path, _model(CORE_INPUTS, _core()), FuseAttentionConfig()) == (
        f"{MASKED}com.microsoft.MultiHeadAttention is not a standard ONNX op and no target is "
        "given (target=NAME)"
    )


def test_another_target_declares_no_fused_attention(tmp_path: Path) -> None:
    (fuse,) = parse_pipeline("fuse-attention{target=tvm}")
    assert fuse.config == FuseAttentionConfig(target="tvm")
    assert _skip(tmp_path, _model(CORE_INPUTS, _core()), fuse.config) == (
        f"{MASKED}target 'tvm' declares no com.microsoft.MultiHeadAttention at opset 14"
    )


def _declare(monkeypatch: pytest.MonkeyPatch, attention: FusedOp) -> FuseAttentionConfig:
    """A config for a target whose capabilities declare only `attention`."""
    declared = Capabilities(None, frozenset({"float32", "float16"}), fused_ops=(attention,))
    monkeypatch.setattr(target_capabilities, "capabilities_of", lambda name: declared)
    return FuseAttentionConfig(target="reference")


def test_a_mask_needs_the_bias_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _declare(monkeypatch, FusedOp("MultiHeadAttention", "com.microsoft"))
    assert _skip(tmp_path / "masked", _model(CORE_INPUTS, _core()), config) == (
        f"{MASKED}target 'reference' declares com.microsoft.MultiHeadAttention without the "
        "'bias' variant the mask 'mask' needs"
    )
    unmasked = load_text(tmp_path / "unmasked", _model(CORE_INPUTS, _core(masked=False)))
    assert FuseAttention(config)(unmasked).modified


def test_the_element_type_must_be_declared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    half = FusedOp("MultiHeadAttention", "com.microsoft", dtypes=frozenset({"float16"}))
    assert _skip(tmp_path, _model(CORE_INPUTS, _core()), _declare(monkeypatch, half)) == (
        f"{MASKED}target 'reference' declares com.microsoft.MultiHeadAttention for float16, "
        "not float32"
    )


def test_softmax_not_over_the_last_axis(tmp_path: Path) -> None:
    before = _model(CORE_INPUTS, _core("<axis = 2>"))
    assert _skip(tmp_path, before) == f"{MASKED}Softmax runs over axis 2, not the last"


def test_softmax_default_axis_depends_on_the_opset(tmp_path: Path) -> None:
    before = _model(CORE_INPUTS, _core(""), opset=11)
    assert _skip(tmp_path, before) == f"{MASKED}Softmax runs over axis 1, not the last"
    model = load_text(tmp_path / "opset13", _model(CORE_INPUTS, _core(""), opset=13))
    assert FuseAttention(ORT)(model).modified


def test_scores_not_4d(tmp_path: Path) -> None:
    before = _model(
        "float[2,4,8] q, float[2,6,8] k, float[2,6,8] v, float[2,1,6] mask",
        _core().replace("[0, 1, 3, 2]", "[0, 2, 1]"),
        output="float[2,4,8] y",
    )
    assert _skip(tmp_path, before) == (
        f"{MASKED}the Softmax input is not known to be 4-D [batch, heads, seq, kv_seq]"
    )


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        ("float[2] scale = {0.35, 0.35}", "Mul scale 'scale' has shape [2], not one element"),
        ("float scale = {0.0}", "Mul scale 'scale' is 0"),
    ],
)
def test_a_scale_must_be_one_nonzero_number(tmp_path: Path, weights: str, reason: str) -> None:
    before = _model(CORE_INPUTS, _core(), weights=weights)
    assert _skip(tmp_path, before) == f"{MASKED}{reason}"


def test_a_scale_must_be_a_constant(tmp_path: Path) -> None:
    before = _model(f"{CORE_INPUTS}, float scale", _core(), weights="")
    assert _skip(tmp_path, before) == f"{MASKED}Mul scale 'scale' is a graph input"


def test_probabilities_read_elsewhere(tmp_path: Path) -> None:
    before = _model(CORE_INPUTS, _core(), output="float[2,2,4,8] y, float[2,2,4,6] p")
    assert _skip(tmp_path, before) == f"{MASKED}Softmax output is a graph output"


def test_scores_read_elsewhere(tmp_path: Path) -> None:
    before = _model(
        CORE_INPUTS, f"{_core()}\n z = Relu(s)", output="float[2,2,4,8] y, float[2,2,4,6] z"
    )
    assert _skip(tmp_path, before) == f"{MASKED}MatMul output has 2 consumers"


def test_value_not_4d(tmp_path: Path) -> None:
    inputs = CORE_INPUTS.replace("float[2,2,6,8] v", "float[6,8] v")
    assert _skip(tmp_path, _model(inputs, _core())) == (
        f"{MASKED}Q, K^T and V are not all known to be 4-D [batch, heads, seq, head]"
    )


def test_heads_not_static(tmp_path: Path) -> None:
    inputs = "float[2,N,4,8] q, float[2,N,6,8] k, float[2,N,6,8] v, float[2,1,1,6] mask"
    assert _skip(tmp_path, _model(inputs, _core(), output="float[2,N,4,8] y")) == (
        f"{MASKED}Q, K and V do not share a static number of heads"
    )


def test_batch_sizes_differ(tmp_path: Path) -> None:
    inputs = "float[2,2,4,8] q, float[1,2,6,8] k, float[1,2,6,8] v, float[2,1,1,6] mask"
    assert _skip(tmp_path, _model(inputs, _core())) == (
        f"{MASKED}Q, K and V have different batch sizes"
    )


def test_an_element_type_attention_does_not_take(tmp_path: Path) -> None:
    before = _model(
        CORE_INPUTS.replace("float", "double"),
        _core(),
        output="double[2,2,4,8] y",
        weights="double scale = {0.35}",
    )
    assert _skip(tmp_path, before) == (
        f"{MASKED}MultiHeadAttention takes float, float16 or bfloat16, not DOUBLE"
    )


def test_mask_not_4d(tmp_path: Path) -> None:
    inputs = CORE_INPUTS.replace("float[2,1,1,6] mask", "float[6] mask")
    assert _skip(tmp_path, _model(inputs, _core())) == (
        f"{MASKED}mask 'mask' is not known to be 4-D"
    )


def test_mask_broadcast_over_keys(tmp_path: Path) -> None:
    inputs = CORE_INPUTS.replace("float[2,1,1,6] mask", "float[2,1,4,1] mask")
    assert _skip(tmp_path, _model(inputs, _core())) == (
        f"{MASKED}mask 'mask' of shape [2,1,4,1] does not fit [batch or 1, heads or 1, "
        "seq or 1, kv_seq]"
    )


@pytest.mark.parametrize(
    ("inputs", "body"),
    [
        ("float[2,2,4,6] a", "y = Softmax(a)"),  # no MatMul with V
        ("float[2,2,4,6] a, float[2,2,6,8] v", "p = Softmax(a)\n y = MatMul(p, v)"),  # no Q @ K^T
        (
            "float[2,2,4,6] a, float[2,2,4,6] b, float[2,2,6,8] v",
            "c = Add(a, b)\n p = Softmax(c)\n y = MatMul(p, v)",
        ),
    ],
)
def test_softmax_outside_attention_is_no_site(tmp_path: Path, inputs: str, body: str) -> None:
    assert check_skip(tmp_path, FuseAttention(ORT), _model(inputs, body, weights="")) == ()


# --- the BERT-style encoder ----------------------------------------------------------------


@pytest.mark.parametrize(("opset", "seq"), [(14, 16), (14, "seq"), (20, 16)])
def test_bert_like(tmp_path: Path, opset: int, seq: int | str) -> None:
    """Each layer's attention, head split and merge (with their Shape/Gather/Concat shapes) go
    into one MultiHeadAttention; the padding mask is expanded (at run time for a symbolic seq)."""
    model = load(build_bert_like(opset, seq=seq), tmp_path)
    feeds = bert_like_feeds(seq=16)
    before = outputs_of(model, feeds)
    result = FuseAttention(ORT)(model)
    ops = [node.op_type for node in model.graph]
    assert ops.count("MultiHeadAttention") == 2
    assert "Softmax" not in ops and "Transpose" not in ops and "Reshape" not in ops
    assert ops.count("Expand") == 2
    assert result.skipped == ()
    assert verify(model) == []
    assert_close(before, outputs_of(model, feeds))


@pytest.mark.parametrize("opset", [14, 17, 20])
def test_bert_like_fuse_pipeline(tmp_path: Path, opset: int) -> None:
    """The three recognizers on the whole encoder, checked by the manager after each pass."""
    model = load(build_bert_like(opset), tmp_path)
    feeds = bert_like_feeds()
    before = outputs_of(model, feeds)
    spec = bind_pipeline("recognize-gelu,recognize-layernorm,fuse-attention", "onnxruntime")
    records = run_pipeline(model, parse_pipeline(spec), [VerifyAfterEachPass()]).records
    assert [(record.pass_name, record.modified, record.skipped) for record in records] == [
        ("recognize-gelu", True, ()),
        ("recognize-layernorm", True, ()),
        ("fuse-attention", True, ()),
    ]
    ops = [node.op_type for node in model.graph]
    assert (ops.count("Gelu"), ops.count("LayerNormalization")) == (2, 5)
    assert ops.count("MultiHeadAttention") == 2
    assert_close(before, outputs_of(model, feeds))
