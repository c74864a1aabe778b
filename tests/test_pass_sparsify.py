"""sparsify: exact masks for each pattern, per-layer and global thresholds, exclusions, skips,
the sparsity annotation through save/load, bad options, and outputs of the pruned model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as oir
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

from ir.model_io import load_model, save_model
from ir.reference import run_reference
from passes.audit import Change, ChangeKind, Skip
from passes.catalog import PASSES
from passes.instruments import VerifyAfterEachPass
from passes.manager import run_pipeline
from passes.pipeline import PipelineError, parse_pipeline
from passes.sparsity.sparsify import SPARSITY_KEY, Sparsify, SparsifyConfig
from runner.cli import main

FLOAT = TensorProto.FLOAT


def _model(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    weights: dict[str, np.ndarray],
    inputs: dict[str, list[int]],
    outputs: tuple[str, ...] = ("y",),
) -> oir.Model:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(name, FLOAT, None) for name in outputs],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return load_model(path)


def _single(tmp_path: Path, op: str, weight: np.ndarray, **attributes: int) -> oir.Model:
    """x -> op(x, w) -> y, with x shaped to fit: MatMul/Gemm w [K, N] ([N, K] with transB),
    Conv w [Cout, Cin, kh, kw] on a 4x4 image."""
    if op == "Conv":
        x_shape = [1, weight.shape[1], 4, 4]
    else:
        x_shape = [1, weight.shape[1 if attributes.get("transB") else 0]]
    node = helper.make_node(op, ["x", "w"], ["y"], **attributes)
    return _model(tmp_path, [node], {"w": weight}, {"x": x_shape})


def _weight(model: oir.Model, name: str = "w") -> np.ndarray:
    return model.graph.initializers[name].const_value.numpy()


def _annotation(model: oir.Model, name: str = "w") -> dict[str, object]:
    return json.loads(model.graph.initializers[name].metadata_props[SPARSITY_KEY])


def _prune(model: oir.Model, **options: object) -> tuple[np.ndarray, Change]:
    """The pruned weight 'w' and the one change recorded."""
    result = Sparsify(SparsifyConfig(**options))(model)
    (change,) = result.changes
    assert result.skipped == ()
    return _weight(model), change


def f32(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_sparsify_is_in_the_catalog() -> None:
    assert PASSES["sparsify"] is Sparsify


def test_2_of_4_keeps_the_two_largest_of_every_four_along_k_earlier_ties_kept(
    tmp_path: Path,
) -> None:
    # MatMul B is [K=8, N=2]: groups run down each column. Column 1 is all ties.
    weight = f32([[1, 2], [-4, 2], [3, 2], [2, 2], [0.5, 1], [0.1, -1], [-0.2, 1], [0.3, -1]])
    model = _single(tmp_path, "MatMul", weight)
    pruned, change = _prune(model, pattern="2:4")
    expected = f32([[0, 2], [-4, 2], [3, 0], [0, 0], [0.5, 1], [0, -1], [0, 0], [0.3, 0]])
    np.testing.assert_array_equal(pruned, expected)
    assert change == Change(
        ChangeKind.WEIGHTS,
        ("n0",),
        "n-of-m",
        "MatMul input B 'w' [8, 2] pruned 2:4: 8/16 zeros (sparsity 0.5); "
        "every group of 4 along the reduction axis keeps 2 nonzeros",
    )
    assert _annotation(model) == {
        "pattern": "2:4",
        "output_axis": 1,
        "reduction_axis": 0,
        "sparsity": 0.5,
    }


def test_1_of_4_on_gemm_with_transposed_b_groups_along_its_second_axis(tmp_path: Path) -> None:
    weight = f32([[1, -5, 2, 3, 0, 0, 0, 0], [7, 1, 1, 7, -1, 2, -3, 1]])  # [N=2, K=8]
    model = _single(tmp_path, "Gemm", weight, transB=1)
    pruned, change = _prune(model, pattern="1:4")
    expected = f32([[0, -5, 0, 0, 0, 0, 0, 0], [7, 0, 0, 0, 0, 0, -3, 0]])
    np.testing.assert_array_equal(pruned, expected)
    assert change.reason == (
        "Gemm input B 'w' [2, 8] pruned 1:4: 13/16 zeros (sparsity 0.8125); "
        "every group of 4 along the reduction axis keeps 0 to 1 nonzeros"
    )
    assert _annotation(model)["reduction_axis"] == 1


def test_1_of_16_keeps_the_largest_magnitude_of_each_column(tmp_path: Path) -> None:
    weight = np.zeros((16, 2), np.float32)
    weight[:, 0] = np.arange(16) - 10.0  # largest magnitude: -10 at row 0
    weight[:, 1] = 1.0  # all tied: the first is kept
    model = _single(tmp_path, "MatMul", weight)
    pruned, change = _prune(model, pattern="1:16")
    expected = np.zeros((16, 2), np.float32)
    expected[0] = [-10, 1]
    np.testing.assert_array_equal(pruned, expected)
    assert change.reason.endswith(
        "30/32 zeros (sparsity 0.9375); every group of 16 along the reduction axis keeps 1 nonzeros"
    )


def test_n_of_m_on_conv_groups_input_channels_at_each_kernel_position(tmp_path: Path) -> None:
    weight = np.zeros((1, 4, 1, 2), np.float32)  # [Cout, Cin, kh, kw]
    weight[0, :, 0, 0] = [1, 2, 3, 4]
    weight[0, :, 0, 1] = [4, 3, 2, 1]
    model = _single(tmp_path, "Conv", weight)
    pruned, _ = _prune(model, pattern="2:4")
    np.testing.assert_array_equal(pruned[0, :, 0, 0], [0, 0, 3, 4])
    np.testing.assert_array_equal(pruned[0, :, 0, 1], [4, 3, 0, 0])
    assert _annotation(model) == {
        "pattern": "2:4",
        "output_axis": 0,
        "reduction_axis": 1,
        "sparsity": 0.5,
    }


def test_4x4_blocks_prune_the_smallest_l2_norms(tmp_path: Path) -> None:
    # Gemm B with transB is [N=8 output channels, K=8]: four 4x4 blocks.
    weight = np.kron(f32([[1, -3], [2, 0.5]]), np.ones((4, 4), np.float32))
    model = _single(tmp_path, "Gemm", weight, transB=1)
    pruned, change = _prune(model, pattern="4x4", ratio=0.5)
    np.testing.assert_array_equal(pruned, np.kron(f32([[0, -3], [2, 0]]), np.ones((4, 4))))
    assert change == Change(
        ChangeKind.WEIGHTS,
        ("n0",),
        "block",
        "Gemm input B 'w' [8, 8] pruned 4x4 to ratio 0.5: 32/64 zeros (sparsity 0.5); "
        "2 of 4 4x4 blocks pruned, 2 kept",
    )


def test_1x16_blocks_rank_by_l2_not_l1(tmp_path: Path) -> None:
    one_big = [3.0] + [0.0] * 15  # L2 3, L1 3
    many_small = [0.5] * 16  # L2 2, L1 8
    ones = [1.0] * 16  # L2 4, L1 16
    other_big = [5.0] + [0.0] * 15  # L2 5, L1 5
    weight = f32([one_big + many_small, ones + other_big])  # [N=2, K=32]
    model = _single(tmp_path, "Gemm", weight, transB=1)
    pruned, change = _prune(model, pattern="1x16", ratio=0.5)
    # L2 drops many_small (2) and one_big (3); L1 would have dropped one_big and other_big.
    np.testing.assert_array_equal(pruned, f32([[0.0] * 32, ones + other_big]))
    assert change.reason.endswith("2 of 4 1x16 blocks pruned, 2 kept")


def test_unstructured_half_prunes_the_smallest_later_ties_first(tmp_path: Path) -> None:
    # As [output channel, K]: channel 0 is |1, 2, 0.5, 4|, channel 1 is |1, 3, 1, 0.5|.
    weight = f32([[1, -1], [-2, 3], [0.5, 1], [4, -0.5]])
    model = _single(tmp_path, "MatMul", weight)
    pruned, change = _prune(model, pattern="unstructured", ratio=0.5)
    # Both 0.5s go, then two of the three 1s: the later two in [channel, K] order.
    np.testing.assert_array_equal(pruned, f32([[1, 0], [-2, 3], [0, 0], [4, 0]]))
    assert change == Change(
        ChangeKind.WEIGHTS,
        ("n0",),
        "unstructured",
        "MatMul input B 'w' [4, 2] pruned unstructured to ratio 0.5: 4/8 zeros (sparsity 0.5); "
        "zeros per output channel: 1 to 3 of 4",
    )
    assert _annotation(model)["pattern"] == "unstructured"


def _two_matmuls(tmp_path: Path) -> oir.Model:
    """x -> MatMul(w1) -> MatMul(w2) -> y; w2 is w1 doubled."""
    w1 = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["y"]),
    ]
    return _model(tmp_path, nodes, {"w1": w1, "w2": 2 * w1}, {"x": [1, 4]})


def test_layer_scope_prunes_each_tensor_to_the_ratio(tmp_path: Path) -> None:
    model = _two_matmuls(tmp_path)
    Sparsify(SparsifyConfig(pattern="unstructured", ratio=0.5))(model)
    for name in ("w1", "w2"):
        assert np.count_nonzero(_weight(model, name) == 0) == 8
        assert _annotation(model, name)["sparsity"] == 0.5


def test_global_scope_uses_one_threshold_over_all_tensors(tmp_path: Path) -> None:
    model = _two_matmuls(tmp_path)
    result = Sparsify(SparsifyConfig(pattern="unstructured", ratio=0.5, scope="global"))(model)
    # The 16 smallest of {1..16} and {2, 4, ..., 32}: 1..11 in w1, 2..10 in w2.
    w1 = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(_weight(model, "w1"), np.where(w1 > 11, w1, 0))
    np.testing.assert_array_equal(_weight(model, "w2"), np.where(2 * w1 > 10, 2 * w1, 0))
    assert [change.reason.split(": ", 1)[1] for change in result.changes] == [
        "11/16 zeros (sparsity 0.6875); zeros per output channel: 2 to 3 of 4",
        "5/16 zeros (sparsity 0.3125); zeros per output channel: 1 to 2 of 4",
    ]
    assert "unstructured to ratio 0.5 over all weights" in result.changes[0].reason


def _three_ops(tmp_path: Path) -> oir.Model:
    """x -> Conv(wc) -> Flatten -> MatMul(wm) -> Gemm(wg) -> y, every weight 2:4-prunable."""
    rng = np.random.default_rng(0)
    weights = {
        "wc": rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
        "wm": rng.standard_normal((16, 8)).astype(np.float32),
        "wg": rng.standard_normal((4, 8)).astype(np.float32),
        "bg": rng.standard_normal(4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "wc"], ["c"]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("MatMul", ["f", "wm"], ["m"]),
        helper.make_node("Gemm", ["m", "wg", "bg"], ["y"], transB=1),
    ]
    return _model(tmp_path, nodes, weights, {"x": [2, 4, 4, 4]})


def test_exclusions_by_op_type_and_node_id(tmp_path: Path) -> None:
    model = _three_ops(tmp_path)
    before = {name: _weight(model, name) for name in ("wc", "wm")}
    result = Sparsify(SparsifyConfig(pattern="2:4", exclude=("Conv", "n2")))(model)
    assert result.skipped == (
        Skip(
            "n-of-m",
            ("n0",),
            "Conv input W 'wc' not pruned: node n0 (Conv) is excluded (exclude=Conv)",
        ),
        Skip(
            "n-of-m",
            ("n2",),
            "MatMul input B 'wm' not pruned: node n2 (MatMul) is excluded (exclude=n2)",
        ),
    )
    assert [change.nodes for change in result.changes] == [("n3",)]
    for name, array in before.items():
        np.testing.assert_array_equal(_weight(model, name), array)
        assert SPARSITY_KEY not in model.graph.initializers[name].metadata_props


def test_exclude_option_parses_as_a_comma_list() -> None:
    (pass_,) = parse_pipeline("sparsify{pattern=4x4 ratio=0.25 exclude=Conv,n7}")
    assert pass_.config == SparsifyConfig(pattern="4x4", ratio=0.25, exclude=("Conv", "n7"))


def test_shapes_the_pattern_does_not_divide_are_skipped_not_padded(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "k6"], ["h"]),  # K = 6
        helper.make_node("Gemm", ["h", "n6"], ["y"], transB=1),  # 6 output channels, K = 8
    ]
    weights = {"k6": np.ones((6, 8), np.float32), "n6": np.ones((6, 8), np.float32)}
    model = _model(tmp_path, nodes, weights, {"x": [1, 6]})
    nm = Sparsify(SparsifyConfig(pattern="2:4"))(model)
    assert nm.skipped == (
        Skip(
            "n-of-m",
            ("n0",),
            "MatMul input B 'k6' not pruned: its reduction length 6 is not a multiple of 4",
        ),
    )
    blocks = Sparsify(SparsifyConfig(pattern="4x4", ratio=0.5))(model)
    assert [skip.reason for skip in blocks.skipped] == [
        "MatMul input B 'k6' not pruned: its reduction length 6 is not a multiple of 4",
        "Gemm input B 'n6' not pruned: its 6 output channels are not a multiple of 4",
    ]
    np.testing.assert_array_equal(_weight(model, "k6"), np.ones((6, 8)))


def test_computed_and_shared_operands_are_left_alone(tmp_path: Path) -> None:
    constant = numpy_helper.from_array(np.ones((4, 4), np.float32))
    nodes = [
        helper.make_node("MatMul", ["x", "b"], ["h"]),  # B is a graph input
        helper.make_node("MatMul", ["h", "w"], ["m"]),
        helper.make_node("Add", ["m", "w"], ["a"]),  # w is also read by Add
        helper.make_node("Constant", [], ["c"], value=constant),
        helper.make_node("MatMul", ["a", "c"], ["y"]),  # B is a Constant node's output
    ]
    model = _model(tmp_path, nodes, {"w": np.ones((4, 4), np.float32)}, {"x": [4, 4], "b": [4, 4]})
    result = Sparsify()(model)
    assert not result.modified
    assert [skip.reason for skip in result.skipped] == [
        "MatMul input B 'b' not pruned: it is a graph input",
        "MatMul input B 'w' not pruned: it is also read by node n2 (Add)",
        "MatMul input B 'c' not pruned: it is computed by a Constant node (run fold-constants "
        "first)",
    ]


def test_a_weight_read_by_two_matmuls_is_pruned_once(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("MatMul", ["h", "w"], ["y"]),
    ]
    weight = np.arange(16, dtype=np.float32).reshape(4, 4)
    model = _model(tmp_path, nodes, {"w": weight}, {"x": [1, 4]})
    result = Sparsify()(model)
    assert [change.nodes for change in result.changes] == [("n0", "n1")]
    np.testing.assert_array_equal(_weight(model), np.where(weight >= 8, weight, 0))


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    model = _three_ops(tmp_path)
    Sparsify()(model)
    again = Sparsify()(model)
    assert (again.modified, again.changes) == (False, ())
    assert [skip.nodes for skip in again.skipped] == [("n0",), ("n2",), ("n3",)]
    assert again.skipped[1].reason == (
        "MatMul input B 'wm' already pruned 2:4: 64/128 zeros (sparsity 0.5); "
        "every group of 4 along the reduction axis keeps 2 nonzeros"
    )


def test_the_annotation_and_zeros_survive_save_and_load(tmp_path: Path) -> None:
    model = _three_ops(tmp_path)
    Sparsify(SparsifyConfig(pattern="unstructured", ratio=0.25))(model)
    pruned = {name: _weight(model, name) for name in ("wc", "wm", "wg")}
    annotations = {name: _annotation(model, name) for name in pruned}
    loaded = load_model(save_model(model, tmp_path / "pruned.onnx"))
    for name, array in pruned.items():
        np.testing.assert_array_equal(_weight(loaded, name), array)
        assert _annotation(loaded, name) == annotations[name]
    assert annotations["wc"] == {
        "pattern": "unstructured",
        "output_axis": 0,
        "reduction_axis": 1,
        "sparsity": 36 / 144,
    }


def test_half_precision_weights_keep_their_type(tmp_path: Path) -> None:
    weight = np.arange(8, dtype=np.float16).reshape(4, 2)
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)],
        [numpy_helper.from_array(weight, "w")],
    )
    path = tmp_path / "half.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    model = load_model(path)
    Sparsify()(model)
    assert model.graph.initializers["w"].const_value.dtype == oir.DataType.FLOAT16
    np.testing.assert_array_equal(_weight(model), np.array([[0, 0], [0, 0], [4, 5], [6, 7]]))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sparsify{pattern=3:2}", "pattern 3:2: an N:M pattern needs 0 < N < M"),
        ("sparsify{pattern=0:4}", "pattern 0:4: an N:M pattern needs 0 < N < M"),
        ("sparsify{pattern=4:4}", "pattern 4:4: an N:M pattern needs 0 < N < M"),
        ("sparsify{pattern=0x4 ratio=0.5}", "pattern 0x4: block sides must be at least 1"),
        (
            "sparsify{pattern=dense}",
            "unknown pattern 'dense' (expected unstructured, N:M such as 2:4, or RxC)",
        ),
        ("sparsify{pattern=2:4 ratio=0.5}", "pattern 2:4 fixes its sparsity; ratio does not apply"),
        (
            "sparsify{pattern=2:4 scope=global}",
            "pattern 2:4 prunes within each group; scope=global does not apply",
        ),
        (
            "sparsify{pattern=unstructured}",
            "pattern unstructured needs ratio=<fraction to prune, 0 <= ratio < 1>",
        ),
        ("sparsify{pattern=4x4 ratio=1.5}", "ratio=1.5 is outside 0 <= ratio < 1"),
        ("sparsify{pattern=4x4 ratio=1}", "ratio=1.0 is outside 0 <= ratio < 1"),
        ("sparsify{pattern=unstructured ratio=-0.1}", "ratio=-0.1 is outside 0 <= ratio < 1"),
        ("sparsify{scope=model}", "option scope=model: expected one of layer, global"),
        (
            "sparsify{exclude=Relu}",
            "exclude item 'Relu' is neither a node id (n<number>) nor a pruned op "
            "(Conv, Gemm, MatMul)",
        ),
    ],
)
def test_bad_options_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(PipelineError) as raised:
        parse_pipeline(spec)
    assert str(raised.value) == f"pass 'sparsify': {message}"


def test_an_unknown_scope_is_rejected_without_the_parser() -> None:
    with pytest.raises(ValueError, match="unknown scope 'model'"):
        SparsifyConfig(scope="model")  # type: ignore[arg-type]


def _numpy_three_ops(x: np.ndarray, wc: np.ndarray, wm: np.ndarray, wg: np.ndarray, bg):
    windows = sliding_window_view(x, (3, 3), axis=(2, 3))  # [B, Cin, 2, 2, 3, 3]
    conv = np.einsum("bihwkl,oikl->bohw", windows, wc)
    return conv.reshape(len(x), -1) @ wm @ wg.T + bg


@pytest.mark.parametrize(
    "options",
    [
        {"pattern": "2:4"},
        {"pattern": "4x4", "ratio": 0.5},
        {"pattern": "unstructured", "ratio": 0.7},
    ],
)
def test_pruned_model_runs_and_matches_numpy_with_the_masked_weights(
    tmp_path: Path, options: dict[str, object]
) -> None:
    model = _three_ops(tmp_path)
    dense = {name: _weight(model, name) for name in ("wc", "wm", "wg", "bg")}
    records = run_pipeline(
        model, [Sparsify(SparsifyConfig(**options))], [VerifyAfterEachPass()]
    ).records
    assert records[0].modified and len(records[0].changes) == 3
    masked = {name: _weight(model, name) for name in dense}
    for name in ("wc", "wm", "wg"):
        kept = masked[name] != 0
        np.testing.assert_array_equal(masked[name][kept], dense[name][kept])
    # 2:4 along the reduction axes, checked from the arrays themselves.
    if options["pattern"] == "2:4":
        per_group = [
            (masked["wc"] != 0).reshape(4, 1, 4, 9).sum(axis=2),
            (masked["wm"] != 0).reshape(4, 4, 8).sum(axis=1),
            (masked["wg"] != 0).reshape(4, 2, 4).sum(axis=2),
        ]
        assert all((counts == 2).all() for counts in per_group)
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 4)).astype(np.float32)
    (got,) = run_reference(model, {"x": x})
    expected = _numpy_three_ops(
        x.astype(np.float64), *(masked[n] for n in ("wc", "wm", "wg", "bg"))
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_runner_passes_run_with_an_inline_sparsify_spec(tmp_path: Path) -> None:
    model = _three_ops(tmp_path)
    source, output, audit = tmp_path / "in.onnx", tmp_path / "out.onnx", tmp_path / "a.jsonl"
    save_model(model, source)
    spec = "sparsify{pattern=2:4}"
    args = [
        "passes",
        "run",
        str(source),
        "--pipeline",
        spec,
        "-o",
        str(output),
        "--audit",
        str(audit),
    ]
    assert main(args) == 0
    (record,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert record["config"] == {
        "pattern": "2:4",
        "ratio": None,
        "scope": "layer",
        "exclude": [],
        "nodes": [],
        "skip_nodes": [],
    }
    assert record["rule_counts"] == {"n-of-m": 3}
    assert _annotation(load_model(output), "wm")["sparsity"] == 0.5
