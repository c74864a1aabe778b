"""Every zoo builder gives a valid model that runs; the cache builds once; `runner zoo`."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "tiny" in line]
    cells = [cell.strip() for cell in line.split("\u2502")]
    assert cells[4:6] == ["3.58 K", "29.2 K"]


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
