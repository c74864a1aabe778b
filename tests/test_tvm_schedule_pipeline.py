"""How the tvm target picks schedule rules, records them, and what the host figures are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from targets.tvm_schedules.apply import DEFAULT, apply_rules
from targets.tvm_schedules.host_tuning import CpuTuning, cache_sizes, host_tuning, vector_bits
from targets.tvm_schedules.rule import Declined, Scheduled, ScheduleRule
from tests.tvm_schedule_helpers import TUNING, fused_functions

MATMUL_RELU = """<ir_version: 8, opset_import: ["" : 17]>
g (float[8, 64] x, float[64, 32] w) => (float[8, 32] y) { m = MatMul(x, w) y = Relu(m) }"""


def test_vector_width_follows_the_flags() -> None:
    assert vector_bits({"avx512f", "avx2"}) == 512
    assert vector_bits({"avx2", "fma"}) == 256
    assert vector_bits({"sse4_2"}) == 128
    tuning = CpuTuning(vector_bits=512, cores=2, l1_bytes=1, l2_bytes=1, l3_bytes=1)
    assert (tuning.lanes(32), tuning.lanes(16), tuning.lanes(8)) == (16, 32, 64)


def test_cache_sizes_read_sysfs_and_default_the_rest(tmp_path: Path) -> None:
    for index, (level, kind, size) in enumerate(
        [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K")]
    ):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
    sizes = cache_sizes(tmp_path)
    assert sizes[1] == 48 * 1024  # the instruction cache is not counted
    assert sizes[2] == 2 * 1024 * 1024
    assert sizes[3] == 8 * 1024 * 1024  # not listed: the default


def _sysfs_caches(root: Path, sizes: dict[int, str], l1_ways: int) -> Path:
    """A sysfs cache folder: an L1 instruction cache, then the data/unified caches by level."""
    entries = [(1, "Instruction", "32K")] + [
        (level, "Data" if level == 1 else "Unified", size) for level, size in sizes.items()
    ]
    for index, (level, kind, size) in enumerate(entries):
        folder = root / f"index{index}"
        folder.mkdir(parents=True)
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
        (folder / "ways_of_associativity").write_text(f"{l1_ways if level == 1 else 16}\n")
    return root


def test_tile_sizes_follow_the_measured_caches(tmp_path: Path) -> None:
    """The same kernels tile differently on the two machines' measured caches: a Zen 4 EPYC
    core's 1 MiB L2 against a Sapphire Rapids core's 2 MiB."""
    from targets.tvm_schedules.conv2d import ConvShape, choose_plan
    from targets.tvm_schedules.matmul import MatmulAxes, choose_tiles

    zen4 = host_tuning(
        {"avx512f"},
        cores=2,
        caches=_sysfs_caches(tmp_path / "zen4", {1: "32K", 2: "1024K", 3: "32768K"}, 8),
    )
    xeon = host_tuning(
        {"avx512f"},
        cores=2,
        caches=_sysfs_caches(tmp_path / "xeon", {1: "48K", 2: "2048K", 3: "107520K"}, 12),
    )
    assert (zen4.l1_bytes, zen4.l2_bytes, zen4.l3_bytes) == (32 << 10, 1 << 20, 32 << 20)
    assert (xeon.l1_bytes, xeon.l2_bytes, xeon.l3_bytes) == (48 << 10, 2 << 20, 105 << 20)
    assert (zen4.l1_ways, xeon.l1_ways) == (8, 12)
    assert zen4.l1_set_span == xeon.l1_set_span == 4 << 10
    # BERT-base's second FFN matmul (K = 3072): A's rows per task fill half of L2.
    ffn = MatmulAxes((), (0,), 1, 2, 1, 1, True, (128, 768, 3072))
    assert (choose_tiles(ffn, zen4).task_rows, choose_tiles(ffn, xeon).task_rows) == (32, 64)
    # 3x3 conv 128 -> 128 (576 KiB of weights): beyond half of Zen 4's L2, so the cores split
    # the output channels; within half of the Xeon's, so they split the rows.
    conv = ConvShape(1, 28, 28, 128, 3, 3, 128, 3 * 3 * 128 * 128 * 4, 1, 128)
    assert choose_plan(conv, zen4).weights_outer and not choose_plan(conv, xeon).weights_outer


tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")


class _DeclineAll(ScheduleRule):
    name = "never"

    def schedule(self, sch: Any, tuning: CpuTuning) -> Scheduled | Declined:
        return Declined("looks for nothing")


class _TakeMatmul(ScheduleRule):
    """Takes any function with a block named matmul, leaving its loops as they are."""

    name = "as-is"

    def schedule(self, sch: Any, tuning: CpuTuning) -> Scheduled | Declined:
        try:
            sch.get_sblock("matmul")
        except Exception:
            return Declined("no matmul block")
        return Scheduled(sch, f"{tuning.lanes(32)} lanes")


def _module() -> Any:
    return tvm.IRModule(
        {tvm.ir.GlobalVar(name): f for name, f in fused_functions(MATMUL_RELU).items()}
    )


def test_first_rule_that_schedules_wins_and_is_recorded() -> None:
    module, records = apply_rules(_module(), (_DeclineAll(), _TakeMatmul()), TUNING)
    assert [r.to_json() for r in records] == [
        {"function": "fused_matmul_relu", "rule": "as-is", "detail": "16 lanes"}
    ]
    assert module["fused_matmul_relu"].attrs["tirx.is_scheduled"]


def test_a_function_every_rule_declines_keeps_the_default_with_the_reasons() -> None:
    original = _module()
    module, records = apply_rules(original, (_DeclineAll(),), TUNING)
    assert [r.to_json() for r in records] == [
        {"function": "fused_matmul_relu", "rule": DEFAULT, "detail": "never: looks for nothing"}
    ]
    assert "tirx.is_scheduled" not in module["fused_matmul_relu"].attrs
    assert module["fused_matmul_relu"].same_as(original["fused_matmul_relu"])


def _mlp(folder: Path) -> Any:
    import onnx

    from ir.model_io import load_model

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["hb"]),
            helper.make_node("Relu", ["hb"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["z"]),
            helper.make_node("Softmax", ["z"], ["y"], axis=-1),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 96])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 40])],
        [
            numpy_helper.from_array(rng.standard_normal((96, 64)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b1"),
            numpy_helper.from_array(rng.standard_normal((64, 40)).astype(np.float32), "w2"),
        ],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "m.onnx"
    )
    return load_model(folder / "m.onnx")


def test_the_compile_record_says_which_rule_scheduled_each_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ir.files import CACHE_ENV
    from targets.executable import compile_model
    from targets.reference_target import ReferenceTarget
    from targets.tvm_target import TvmConfig, TvmTarget

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    model = _mlp(tmp_path)
    cold = compile_model(TvmTarget(), model).pieces[0][1]
    extra = cold.record.extra
    rules = {s["function"]: s["rule"] for s in extra["schedules"]}
    assert rules == {
        "fused_matmul_add_relu_prepacked": "matmul",  # its constant weight packed at compile time
        "matmul1": "matmul",
        "fast_softmax": "row-op",
    }
    assert extra["schedule_rules"] == {"matmul": 2, "row-op": 1}
    measured = cache_sizes()  # the figures the rules tiled by: this host's caches
    assert (extra["cpu_tuning"]["l1_bytes"], extra["cpu_tuning"]["l2_bytes"]) == (
        measured[1],
        measured[2],
    )
    warm = compile_model(TvmTarget(), model).pieces[0][1]
    assert warm.cache_hit and warm.record.extra["schedules"] == extra["schedules"]
    plain = compile_model(TvmTarget(), model, TvmConfig(schedule=False)).pieces[0][1]
    assert "schedule_rules" not in plain.record.extra
    feeds = {"x": np.random.default_rng(1).standard_normal((4, 96)).astype(np.float32)}
    expected = compile_model(ReferenceTarget(), model).session().run(feeds)[0]
    for compiled in (cold, plain):
        session = TvmTarget().load(compiled, 1)
        np.testing.assert_allclose(session.run(feeds)[0], expected, rtol=1e-5, atol=1e-6)


def test_constant_weights_are_packed_once_at_compile_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A matmul's constant B is read from column panels made while compiling: the function that
    runs takes the packed weight (TVM renames it `_prepacked`) and packs nothing per call. A B
    padded at run time (40 columns) is still packed per task."""
    from ir.files import CACHE_ENV
    from targets.executable import compile_model
    from targets.tvm_target import TvmTarget

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    compiled = compile_model(TvmTarget(), _mlp(tmp_path)).pieces[0][1]
    details = {s["function"]: s["detail"] for s in compiled.record.extra["schedules"]}
    assert details["fused_matmul_add_relu_prepacked"].endswith("B packed at compile time")
    assert "B packed per task" in details["matmul1"]


def test_parameters_every_call_passes_a_constant_are_marked_layout_free() -> None:
    weights = ", ".join("0.5" for _ in range(64 * 32))
    text = f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[8, 64] x, float[64, 16] v) => (float[8, 32] y, float[8, 16] z)
  <float[64, 32] w = {{{weights}}}> {{ y = MatMul(x, w) z = MatMul(x, v) }}"""
    functions = fused_functions(text)  # through fused_module, which marks them
    free = {
        tuple(int(d) for d in func.params[1].shape): func.attrs.get("layout_free_buffers")
        for func in functions.values()
    }
    # w, a constant, in every call of its matmul; v, an input, not
    assert {shape: list(marked or []) for shape, marked in free.items()} == {
        (64, 32): [1],
        (64, 16): [],
    }


def test_the_profile_times_every_compiled_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ir.files import CACHE_ENV
    from targets.executable import compile_model
    from targets.tvm_target import TvmTarget

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    compiled = compile_model(TvmTarget(), _mlp(tmp_path)).pieces[0][1]
    session = TvmTarget().load(compiled, 1)
    feeds = {"x": np.ones((4, 96), np.float32)}
    spent = session.profile(feeds, runs=2)
    functions = {s["function"] for s in compiled.record.extra["schedules"]}
    assert set(spent) == functions
    assert all(seconds > 0 for seconds in spent.values())
    session.run(feeds)  # the instrument is gone afterwards


@pytest.mark.parametrize(
    ("function", "op"),
    [
        ("fused_conv2d7_add6_relu5", "conv2d"),
        ("layer_norm1", "layer_norm"),
        ("max_pool2d", "max_pool2d"),
        ("fused_transpose27_reshape6", "transpose"),
        ("fast_softmax", "softmax"),
    ],
)
def test_profile_rows_are_named_after_the_leading_op(function: str, op: str) -> None:
    from targets.tvm_schedules.profile import leading_op

    assert leading_op(function) == op


_ODD_NESTS = {
    "arg-reduction": "(float[4, 8] x) => (int64[4, 1] y) { y = ArgMax<axis = 1>(x) }",
    "dot-product": "(float[8] a, float[8] b) => (float y) { y = MatMul(a, b) }",
    "scalars": """(float[4, 8] x) => (float[4, 8] y) {
        top = ReduceMax<keepdims = 0>(x)
        low = ReduceMin<keepdims = 0>(x)
        span = Sub(top, low)
        y = Div(x, span)
    }""",
    "scatter": """(float[8] data, int64[2, 1] at, float[2] updates) => (float[8] y) {
        y = ScatterND(data, at, updates)
    }""",
}


@pytest.mark.parametrize("graph", list(_ODD_NESTS.values()), ids=list(_ODD_NESTS))
def test_loop_nests_the_rules_do_not_handle_are_declined_cleanly(
    graph: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tuple reductions, scalar outputs, 0-d blocks and scatters (found by ONNX's node tests):
    every rule declines or schedules them without raising, and the results stay right."""
    import onnx

    from ir.files import CACHE_ENV
    from ir.model_io import load_model
    from ir.seeded_inputs import seeded_inputs
    from targets.executable import compile_model
    from targets.reference_target import ReferenceTarget
    from targets.tvm_target import TvmTarget

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    text = f'<ir_version: 8, opset_import: ["" : 17]>\ng {graph}'
    onnx.save(onnx.parser.parse_model(text), tmp_path / "m.onnx")
    model = load_model(tmp_path / "m.onnx")
    compiled = compile_model(TvmTarget(), model).pieces[0][1]
    details = [s["detail"] for s in compiled.record.extra["schedules"]]
    assert not any("the rule failed" in detail for detail in details), details
    feeds = seeded_inputs(model, int_high=2)
    expected = compile_model(ReferenceTarget(), model).session().run(feeds)
    actual = TvmTarget().load(compiled, 1).run(feeds)
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_rule_that_raises_declines_with_the_error() -> None:
    class Broken(ScheduleRule):
        name = "broken"

        def schedule(self, sch: Any, tuning: CpuTuning) -> Scheduled | Declined:
            raise IndexError("list index out of range")

    _, records = apply_rules(_module(), (Broken(), _TakeMatmul()), TUNING)
    assert records[0].rule == "as-is"
    _, records = apply_rules(_module(), (Broken(),), TUNING)
    assert records[0].detail == "broken: the rule failed (IndexError: list index out of range)"
