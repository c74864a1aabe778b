"""Passes ask a target's declared capabilities, never its name: no string or comment in passes/
names a registered target, and no pass option defaults to one. So a vendor's target receives a
fusion by declaring the op it runs, without anyone editing passes/."""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize
from collections.abc import Iterable
from pathlib import Path

import pytest

from passes.catalog import PASSES
from targets.registry import discover

PASSES_DIR = Path(__file__).resolve().parents[1] / "passes"
# Target names that are English words: prose may use the word, but a string literal equal to
# the name still selects that target.
ENGLISH_WORDS = frozenset({"reference"})
# Python 3.12 splits an f-string into parts; 3.11 gives it as one STRING token.
_TEXT_TOKENS = {tokenize.STRING, tokenize.COMMENT, getattr(tokenize, "FSTRING_MIDDLE", -1)}


def _as_word(name: str) -> re.Pattern[str]:
    """`name` not inside a longer identifier or word: "tvm" matches "tvm's" and "tvm_target"
    but not "xtvm"."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", re.IGNORECASE)


def _literal(token: str) -> object:
    try:
        return ast.literal_eval(token)
    except (ValueError, SyntaxError):  # an f-string with placeholders: never exactly a name
        return None


def target_names_in(source: str, names: Iterable[str]) -> list[str]:
    """Each string or comment of `source` that names one of the targets `names`, as
    "line N: 'name' in TEXT"."""
    words = {name: _as_word(name) for name in names if name not in ENGLISH_WORDS}
    literals = set(names) & ENGLISH_WORDS
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _TEXT_TOKENS:
            continue
        named = [name for name, word in words.items() if word.search(token.string)]
        if token.type == tokenize.STRING and _literal(token.string) in literals:
            named.append(_literal(token.string))
        found += [f"line {token.start[0]}: '{name}' in {token.string[:60]!r}" for name in named]
    return found


@pytest.fixture(scope="module")
def target_names() -> list[str]:
    names = list(discover())
    assert {"onnxruntime", "tvm", "reference"} <= set(names)
    return names


def test_no_string_or_comment_in_passes_names_a_target(target_names: list[str]) -> None:
    found = {
        str(path.relative_to(PASSES_DIR.parent)): hits
        for path in sorted(PASSES_DIR.rglob("*.py"))
        if (hits := target_names_in(path.read_text(encoding="utf-8"), target_names))
    }
    assert found == {}


def test_the_scan_finds_each_kind_of_mention() -> None:
    source = (
        '"""Docstring naming TVM."""\n'
        "x = 1  # as onnxruntime's kernels do\n"
        'y = f"{x} for tvm_target"\n'
        'z = "reference"\n'
        'w = "the reference path, with tvmx and onnxruntimes left alone"\n'
    )
    assert target_names_in(source, ["onnxruntime", "tvm", "reference"]) == [
        'line 1: \'tvm\' in \'"""Docstring naming TVM."""\'',
        "line 2: 'onnxruntime' in \"# as onnxruntime's kernels do\"",
        "line 3: 'tvm' in 'f\"{x} for tvm_target\"'",
        "line 4: 'reference' in '\"reference\"'",
    ]


def _defaults(config_type: type) -> list[object]:
    values = []
    for field in dataclasses.fields(config_type):
        if field.default is not dataclasses.MISSING:
            values.append(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            values.append(field.default_factory())
    return values


def test_no_pass_option_defaults_to_a_target(target_names: list[str]) -> None:
    defaulting = {
        name: value
        for name, pass_type in PASSES.items()
        for value in _defaults(pass_type.config_type)
        if isinstance(value, str) and value in target_names
    }
    assert defaulting == {}
