"""Suites as data files: the shipped ones parse, a custom one expands to exactly its cases, and
every mistake names the file and the case."""

from __future__ import annotations

from pathlib import Path

import pytest

from microbench.ops import OPS, BenchCase
from microbench.suite import SuiteError, load_suite, shipped_suites


@pytest.mark.parametrize("name", shipped_suites())
def test_shipped_suites_parse(name: str) -> None:
    suite = load_suite(name)
    assert suite.cases and suite.description


def test_default_suite_covers_every_op_and_dtype() -> None:
    covered = {(entry.case.op, entry.case.dtype) for entry in load_suite("default").cases}
    assert covered == {(op, dtype) for op, definition in OPS.items() for dtype in definition.dtypes}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_suite_expands_ops_dtypes_and_shapes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
description = "mine"
[[cases]]
op = "gemm"
dtypes = ["fp32", "int8"]
shapes = ["8x8x8", "16x8x4"]
providers = ["numpy"]
[[cases]]
op = ["softmax", "add"]
shapes = ["4x4"]
""",
    )
    suite = load_suite(str(path))
    assert suite.name == "mine" and suite.description == "mine"
    assert [(e.case, e.providers) for e in suite.cases] == [
        (BenchCase("gemm", "fp32", (8, 8, 8)), ("numpy",)),
        (BenchCase("gemm", "fp32", (16, 8, 4)), ("numpy",)),
        (BenchCase("gemm", "int8", (8, 8, 8)), ("numpy",)),
        (BenchCase("gemm", "int8", (16, 8, 4)), ("numpy",)),
        (BenchCase("softmax", "fp32", (4, 4)), None),
        (BenchCase("add", "fp32", (4, 4)), None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1", "needs at least one [[cases]] table"),
        ("[[cases]]\nop = 'gemmm'\nshapes = ['2x2x2']", "case 1: unknown op 'gemmm'"),
        ("[[cases]]\nop = 'gemm'", "case 1: needs 'shapes'"),
        ("[[cases]]\nop = 'gemm'\nshapes = '2x2x2'", "'shapes' must be a non-empty list"),
        ("[[cases]]\nop = 'gemm'\nshapes = ['2x2']", "case 1: gemm shape '2x2' must be MxNxK"),
        (
            "[[cases]]\nop = 'softmax'\ndtypes = ['int8']\nshapes = ['2x2']",
            "softmax does not support dtype 'int8'",
        ),
        ("[[cases]]\nop = 'add'\nshapes = ['2x2']\nrepeat = 3", "unknown key(s) repeat"),
        ("[[cases", "not a readable TOML suite"),
    ],
)
def test_bad_suites_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SuiteError) as caught:
        load_suite(str(path))
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_suite_names_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"unknown suite 'nope' \(shipped: .*default"):
        load_suite("nope")
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(str(tmp_path / "missing.toml"))
