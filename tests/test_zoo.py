"""Every zoo builder gives a valid model that runs; the cache builds once; `runner zoo`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import zoo.resolve
from ir.model_io import load_model
from ir.reference import run_reference
from ir.seeded_inputs import seeded_inputs
from ir.verifier import verify
from runner import zoo_commands
from runner.cli import main
from tests.zoo_small import BUILT, small_build
from zoo.cache import cached_path, model_file
from zoo.catalog import ZOO
from zoo.model import Requirement, ZooModel
from zoo.stats import ModelStats


@pytest.mark.parametrize("name", BUILT)
def test_builder_gives_a_valid_model_that_runs(name, tmp_path):
    model = load_model(small_build(name, tmp_path))
    assert verify(model) == []
    # ids 0/1 are valid everywhere: token types, masks, any vocabulary
    outputs = run_reference(model, seeded_inputs(model, bindings={"batch": 2}, int_high=2))
    for value, array in zip(model.graph.outputs, outputs, strict=True):
        assert array.shape[0] == 2, f"{value.name} has no batch dimension"
        assert np.isfinite(array).all()


def test_the_cache_builds_once_per_version_and_options(tmp_path, monkeypatch):
    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path))
    calls = []

    def builder(**options):
        calls.append(options)
        return ZOO["bert-base"].builder(layers=1, hidden=16, heads=2, vocab=10, seq=4)

    entry = ZooModel("tiny", "regular", "t", "d", "m", builder=builder, options={"a": 1})
    first = model_file(entry)
    assert model_file(entry) == first and calls == [{"a": 1}]
    assert first.parent == tmp_path / "zoo" and first == cached_path(entry)
    other = ZooModel("tiny", "regular", "t", "d", "m", builder=builder, options={"a": 2})
    assert model_file(other) != first and len(calls) == 2
    newer = ZooModel("tiny", "regular", "t", "d", "m", builder=builder, options={"a": 1}, version=2)
    assert model_file(newer) != first and len(calls) == 3


def test_zoo_list_json_has_the_documented_fields(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path))  # no stats computed for the home cache
    assert main(["zoo", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"bert-base", "albert-base", "onnx-light-resnet50"} <= set(rows)
    light = rows["onnx-light-resnet50"]
    for key in ("category", "params", "flops", "inputs", "dataset", "metric", "task"):
        assert key in light
    assert light["flops"] == 8_243_473_000 or light["flops"] > 8e9
    assert light["inputs"] == {"gpu_0/data_0": "f32[1,3,224,224]"}
    assert {row["category"] for row in rows.values()} <= {"regular", "business", "SOTA"}


def test_zoo_build_of_an_unknown_name_is_a_one_line_error(capsys):
    assert main(["zoo", "build", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no zoo model 'no-such-model'" in err and len(err.strip().splitlines()) == 1


def _tiny_zoo(monkeypatch, tmp_path) -> ZooModel:
    """A zoo of one tiny BERT (3,581 params, 29,248 FLOPs at batch 1), cached under tmp_path."""
    monkeypatch.setenv("ASICPERF_CACHE", str(tmp_path))

    def builder():
        return ZOO["bert-base"].builder(layers=1, hidden=16, heads=2, vocab=10, seq=4)

    entry = ZooModel("tiny", "regular", "t", "d", "m", builder=builder)
    for module in (zoo_commands, zoo.resolve):
        monkeypatch.setattr(module, "ZOO", {"tiny": entry})
    return entry


def test_zoo_list_shows_stats_of_a_model_built_by_bench(capsys, tmp_path, monkeypatch):
    _tiny_zoo(monkeypatch, tmp_path)
    zoo.resolve.resolve_model("tiny")  # how bench, run and passes build a zoo model

    assert main(["zoo", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["built"], row["params"], row["flops"]) == (True, 3581, 29248)


def test_zoo_list_prints_small_param_counts_readably(capsys, tmp_path, monkeypatch):
    _tiny_zoo(monkeypatch, tmp_path)
    assert main(["zoo", "build", "tiny"]) == 0
    assert "(3.58 K params, 29.2 KFLOP at batch 1)" in capsys.readouterr().out

    assert main(["zoo", "list"]) == 0
    models, inputs = [line for line in capsys.readouterr().out.splitlines() if "tiny" in line]
    cells = [cell.strip() for cell in models.split("\u2502")]
    assert cells[4:6] == ["3.58 K", "29.2 K"]
    assert [cell.strip() for cell in inputs.split("\u2502")][1:4] == [
        "tiny",
        "attention_mask",
        "i64[1,4]",
    ]


def test_inputs_differing_in_one_number_share_a_line_when_their_types_agree():
    inputs = {
        "input_ids": "i64[1,sequence_length]",
        **{f"past.{n}.key": "f32[1,3,past,64]" for n in range(4)},
        "past.4.key": "f32[1,3,past,32]",  # another shape: apart
        "past.5.key": "f32[1,3,past,64]",  # after a gap: listed, not a range
        "block0.conv1": "f32[8]",
        "block1.conv2": "f32[8]",  # two numbers differ: apart
        "layer01": "f32[2]",
        "layer02": "f32[2]",  # written with a leading zero: listed as written
    }
    assert zoo_commands.grouped_inputs(inputs) == [
        ("input_ids", "i64[1,sequence_length]"),
        ("past.{0,1,2,3,5}.key", "f32[1,3,past,64]"),
        ("past.4.key", "f32[1,3,past,32]"),
        ("block0.conv1", "f32[8]"),
        ("block1.conv2", "f32[8]"),
        ("layer{01,02}", "f32[2]"),
    ]


def test_zoo_list_gives_a_kv_cache_one_line_per_tensor_at_80_columns(capsys, monkeypatch):
    """A decoder of 30 layers: 3 input lines and 2 for its cache, not 60; nothing cut short."""
    kv = {
        f"past_key_values.{n}.{kind}": "f32[1,3,past_sequence_length,64]"
        for n in range(30)
        for kind in ("key", "value")
    }
    tokens = {"input_ids": "i64[1,sequence_length]", "position_ids": "i64[1,sequence_length]"}
    stats = ModelStats(134_515_008, 270_000_000, {**tokens, **kv})
    entry = ZooModel("decoder", "SOTA", "text generation", "d", "perplexity", file=Path("x"))
    monkeypatch.setattr(zoo_commands, "ZOO", {"decoder": entry})
    monkeypatch.setattr(zoo_commands, "stats_for", lambda path, compute: stats)
    monkeypatch.setattr(zoo_commands, "console", lambda: Console(width=80, highlight=False))

    assert main(["zoo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80 and "\u2026" not in "".join(lines)
    start = next(i for i, line in enumerate(lines) if "input_ids" in line)
    listed = [line.replace("\u2502", " ").split() for line in lines[start : start + 4]]
    assert listed == [
        ["decoder", "input_ids", "i64[1,sequence_length]"],
        ["position_ids", "i64[1,sequence_length]"],
        ["past_key_values.{0..29}.key", "f32[1,3,past_sequence_length,64]"],
        ["past_key_values.{0..29}.value", "f32[1,3,past_sequence_length,64]"],
    ]
    assert lines[start + 4].startswith("\u2514")  # the table's bottom edge: nothing more


def test_missing_zoo_package_error_prints_the_runnable_pip_command():
    entry = ZooModel(
        "x",
        "regular",
        "t",
        "d",
        "m",
        requires=(
            Requirement("no_such_module_a", "no-such-package-a"),
            Requirement("numpy", "numpy"),
            Requirement("no_such_module_b", "no-such-package-b", no_deps=True),
        ),
    )
    assert entry.unavailable() == (
        "needs no_such_module_a, no_such_module_b "
        "(pip install no-such-package-a && pip install --no-deps no-such-package-b)"
    )
