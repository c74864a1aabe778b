"""Declared ranges of numeric pass and target options: every numeric option has one, and a value
outside it is a one-line error naming the pass or target, the option and the range."""

from __future__ import annotations

import dataclasses
import math
import types
import typing

import pytest

from passes.catalog import PASSES
from passes.option_range import Range, field_range
from passes.pipeline import PipelineError, make_config, parse_pipeline
from targets.onnxruntime_target import OnnxRuntimeConfig, OnnxRuntimeTarget
from targets.registry import get_target


def _numeric(hint: object) -> bool:
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return any(_numeric(arg) for arg in typing.get_args(hint))
    return hint in (int, float)


_OWNERS = [*PASSES.values(), *(type(get_target(name)) for name in ("onnxruntime", "tvm"))]


@pytest.mark.parametrize("owner", _OWNERS, ids=lambda owner: owner.name)
def test_every_numeric_option_declares_its_range(owner):
    hints = typing.get_type_hints(owner.config_type)
    for field in dataclasses.fields(owner.config_type):
        if _numeric(hints[field.name]):
            assert field_range(field) is not None, f"{owner.name}: {field.name} has no range"
    owner.config_type()  # the defaults are in range


def test_onnxruntime_threads_negative_is_refused():
    with pytest.raises(PipelineError) as caught:
        make_config(OnnxRuntimeTarget, {"threads": "-1"}, kind="target")
    assert str(caught.value) == (
        "target 'onnxruntime': threads=-1 is outside threads >= 0 "
        "(0: onnxruntime's default, one per physical core)"
    )
    assert make_config(OnnxRuntimeTarget, {"threads": "0"}, kind="target").threads == 0


def test_fold_constants_max_elements_negative_is_refused():
    with pytest.raises(PipelineError) as caught:
        parse_pipeline("fold-constants{max_elements=-5}")
    assert (
        str(caught.value) == "pass 'fold-constants': max_elements=-5 is outside max_elements >= 1"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cse{max_initializer_elements=-1}", "max_initializer_elements=-1 is outside"),
        ("recognize-gelu{tolerance=1}", "tolerance=1.0 is outside 0 <= tolerance < 1"),
        ("recognize-gelu{tolerance=nan}", "tolerance=nan is outside 0 <= tolerance < 1"),
        ("quantize-int8{percentile=0}", "percentile=0.0 is outside 0 < percentile <= 100"),
        ("sparsify{pattern=4x4 ratio=1}", "ratio=1.0 is outside 0 <= ratio < 1"),
    ],
)
def test_pass_options_out_of_range_are_refused(spec, message):
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(spec)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_tvm_opt_level_out_of_range_is_refused():
    tvm = type(get_target("tvm"))
    with pytest.raises(PipelineError, match=r"opt_level=5 is outside 0 <= opt_level <= 4"):
        make_config(tvm, {"opt_level": "5"}, kind="target")


def test_configs_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match="threads=-2 is outside threads >= 0"):
        OnnxRuntimeConfig(threads=-2)


@pytest.mark.parametrize(
    ("bounds", "inside", "outside", "text"),
    [
        (Range(low=0), [0, 5, math.inf], [-1, math.nan], "x >= 0"),
        (Range(low=0, high=1, high_open=True), [0, 0.5], [1, -0.1], "0 <= x < 1"),
        (Range(low=0, high=100, low_open=True), [1e-9, 100], [0, 100.5], "0 < x <= 100"),
        (Range(high=2.5, high_open=True), [2, -7], [2.5], "x < 2.5"),
    ],
)
def test_range_bounds_and_wording(bounds, inside, outside, text):
    assert all(bounds.contains(value) for value in inside)
    assert not any(bounds.contains(value) for value in outside)
    assert bounds.describe("x") == text
