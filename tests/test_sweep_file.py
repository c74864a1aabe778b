"""Sweep files and their jobs: the issue's example expanded field for field, job ids that are
the same in every process and change with whatever changes a result, the `runner bench`
command line and Ray resources of a job, each bad input one line naming the file, the run and
the field, and `runner sweep --dry-run` (no Ray needed)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from runner.sweep.jobs import Job, job_id, new_job
from runner.sweep.sweep_file import SweepError, load_sweep
from runner.sweep_command import where_it_could_run
from targets.registry import describe, discover
from zoo.cache import cached_path
from zoo.catalog import ZOO
from zoo.llm_workload import default_llm_workload
from zoo.workload import default_workload

ISSUE_EXAMPLE = """
[[runs]]
level = "model"
models = ["digits-cnn", "resnet50"]
targets = ["onnxruntime", "tvm"]
pipelines = ["", "int8"]
batch = [1, 8]
"""
RAY_MISSING = "runner sweep needs Ray: pip install 'asicperf[sweep]'"


def _file(folder: Path, text: str, name: str = "sweep.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _jobs(folder: Path, text: str) -> list[Job]:
    return load_sweep(_file(folder, text)).jobs()


def _one_job(folder: Path, text: str) -> Job:
    (job,) = _jobs(folder, text)
    return job


def _version(target: str) -> str:
    return describe(discover()[target]).version


def test_the_issue_example_expands_to_every_combination_in_file_order(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, ISSUE_EXAMPLE)
    expected = [
        {
            "run": 0,
            "level": "model",
            "model": model,
            "suite": None,
            "target": target,
            "pipeline": pipeline,
            "batch": batch,
            "scenario": None,
            "hardware": None,
            "settings": {},
        }
        for model in ("digits-cnn", "resnet50")
        for target in ("onnxruntime", "tvm")
        for pipeline in ("", "int8")
        for batch in (1, 8)
    ]
    assert [{k: v for k, v in job.to_json().items() if k != "id"} for job in jobs] == expected
    assert len({job.id for job in jobs}) == 16
    assert all(len(job.id) == 16 and int(job.id, 16) >= 0 for job in jobs)


def test_the_id_hashes_the_canonical_identity(tmp_path: Path) -> None:
    job = _one_job(
        tmp_path,
        '[[runs]]\nlevel = "model"\nmodels = ["resnet50"]\n'
        'targets = ["onnxruntime{threads=2}"]\nbatch = [8]\nmin_duration = 2\n',
    )
    identity = {
        "level": "model",
        "model": f"zoo:{cached_path(ZOO['resnet50']).stem}",
        "suite": None,
        "target": "onnxruntime{threads=2}",
        "target_version": _version("onnxruntime"),
        "pipeline": "",
        "batch": 8,
        "scenario": None,
        "settings": {"min_duration": 2.0},
        "hardware": None,
    }
    assert job.identity() == identity
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    assert job.id == job_id(identity) == hashlib.sha256(canonical.encode()).hexdigest()[:16]


@pytest.mark.slow  # a fresh interpreter imports the target and provider registries: ~2 s
def test_the_id_is_the_same_in_another_process() -> None:
    job = new_job(0, "model", target="tvm{opt_level=2}", model="resnet50", batch=8)
    code = (
        "from runner.sweep.jobs import new_job\n"
        "print(new_job(0, 'model', target='tvm{opt_level=2}', model='resnet50', batch=8).id)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == job.id


BASE = {"level": '"model"', "models": '["resnet50"]', "targets": '["onnxruntime"]', "batch": "[8]"}


def _run(**changes: str) -> str:
    """A [[runs]] table: BASE's fields with `changes` (TOML values as text)."""
    return "[[runs]]\n" + "".join(f"{k} = {v}\n" for k, v in {**BASE, **changes}.items())


@pytest.mark.parametrize(
    "changes",
    [
        {"models": '["vit-b16"]'},
        {"targets": '["onnxruntime{threads=2}"]'},  # a target option
        {"targets": '["tvm"]'},
        {"pipelines": '["O1"]'},
        {"batch": "[1]"},
        {"min_queries": "128"},  # a setting
        {"scenario": '"offline"'},
        {"hardware": '"host"'},
    ],
)
def test_whatever_changes_the_result_changes_the_id(
    tmp_path: Path, changes: dict[str, str]
) -> None:
    assert _one_job(tmp_path, _run(**changes)).id != _one_job(tmp_path, _run()).id


def test_options_written_in_another_order_are_the_same_job(tmp_path: Path) -> None:
    one = _one_job(tmp_path, _run(targets='["tvm{opt_level=2 mcpu=native}"]'))
    other = _one_job(tmp_path, _run(targets='["tvm{mcpu=native opt_level=2}"]'))
    assert one.target == other.target == "tvm{mcpu=native opt_level=2}"
    assert one.id == other.id


def test_a_model_file_is_named_by_its_bytes(tmp_path: Path) -> None:
    model = tmp_path / "models" / "tiny.onnx"
    model.parent.mkdir()
    model.write_bytes(b"first")
    text = '[[runs]]\nlevel = "model"\nmodels = ["models/tiny.onnx"]\ntargets = ["onnxruntime"]\n'
    first = _one_job(tmp_path, text)  # relative to the sweep file's folder
    assert first.model == str(model.resolve())
    assert first.identity()["model"] == "sha256:" + hashlib.sha256(b"first").hexdigest()
    assert first.batch == 1  # a file's default workload: batch 1
    model.write_bytes(b"second!")
    assert _one_job(tmp_path, text).id != first.id


def test_two_runs_naming_one_job_give_it_once_with_the_first_runs_index(tmp_path: Path) -> None:
    run = '[[runs]]\nlevel = "model"\nmodels = ["resnet50"]\ntargets = ["onnxruntime"]\n'
    jobs = _jobs(tmp_path, run + "batch = [1, 8]\n" + run + "batch = [8, 32]\n")
    assert [(job.run, job.batch) for job in jobs] == [(0, 1), (0, 8), (1, 32)]


def test_no_batch_takes_the_workloads_batch_sizes(tmp_path: Path) -> None:
    jobs = _jobs(
        tmp_path, '[[runs]]\nlevel = "model"\nmodels = ["digits-cnn"]\ntargets = ["tvm"]\n'
    )
    assert tuple(job.batch for job in jobs) == default_workload("digits-cnn").batch_sizes


def test_a_model_job_runs_as_runner_bench_takes_it(tmp_path: Path) -> None:
    job = _one_job(
        tmp_path,
        '[[runs]]\nlevel = "model"\nmodels = ["resnet50"]\ntargets = ["onnxruntime{threads=2}"]\n'
        'pipelines = ["int8"]\nbatch = [8]\nscenario = "offline"\nmin_duration = 0.5\n'
        'min_queries = 16\nseed = 3\nhardware = "host"\n',
    )
    assert job.bench_argv(Path("out/x")) == [
        "bench",
        "--level",
        "model",
        "--model",
        "resnet50",
        "--target",
        "onnxruntime{threads=2}",
        "--pipeline",
        "int8",
        "--batch",
        "8",
        "--scenario",
        "offline",
        "--seed",
        "3",
        "--min-duration",
        "0.5",
        "--min-queries",
        "16",
        "--out",
        "out/x",
        "--json",
    ]
    assert job.resources() == {"bench_slot": 1.0, "target:onnxruntime": 1.0, "hardware:host": 1.0}


def test_no_pipeline_is_passed_as_an_empty_one(tmp_path: Path) -> None:
    """Not left out: `runner bench` would apply the workload's own pipeline (O1)."""
    job = _one_job(tmp_path, _run())
    argv = job.bench_argv(Path("o"))
    assert argv[argv.index("--pipeline") + 1] == ""
    assert job.resources() == {"bench_slot": 1.0, "target:onnxruntime": 1.0}


def test_an_llm_job_passes_its_prompt_lengths_as_one_option(tmp_path: Path) -> None:
    jobs = _jobs(
        tmp_path,
        '[[runs]]\nlevel = "llm"\nmodels = ["smollm2-135m"]\ntargets = ["onnxruntime"]\n'
        'pipelines = ["llm-int8"]\nprompt_len = [128, 512]\ngen_len = 16\n',
    )
    assert [job.batch for job in jobs] == list(default_llm_workload("smollm2-135m").batch_sizes)
    assert jobs[0].bench_argv(Path("o"))[-8:] == [
        str(jobs[0].batch),
        "--prompt-len",
        "128,512",
        "--gen-len",
        "16",
        "--out",
        "o",
        "--json",
    ]


def test_an_op_run_crosses_suites_with_kernel_providers(tmp_path: Path) -> None:
    jobs = _jobs(
        tmp_path,
        '[[runs]]\nlevel = "op"\nsuites = ["default", "cpu-headline"]\n'
        'targets = ["numpy", "tvm"]\nmax_time = 0.5\n',
    )
    assert [(job.suite, job.target, job.batch, job.pipeline) for job in jobs] == [
        ("default", "numpy", None, ""),
        ("default", "tvm", None, ""),
        ("cpu-headline", "numpy", None, ""),
        ("cpu-headline", "tvm", None, ""),
    ]
    assert jobs[0].bench_argv(Path("o")) == [
        "bench",
        "--level",
        "op",
        "--suite",
        "default",
        "--provider",
        "numpy",
        "--max-time",
        "0.5",
        "--out",
        "o",
        "--json",
    ]
    assert jobs[0].identity()["target_version"] is None  # providers declare none


MODEL_RUN = '[[runs]]\nlevel = "model"\nmodels = ["resnet50"]\ntargets = ["onnxruntime"]\n'


@pytest.mark.parametrize(
    ("second_run", "message"),
    [
        (
            MODEL_RUN + 'modles = ["resnet50"]\n',
            "'modles' is not a run field (known: level, targets, models,",
        ),
        (
            '[[runs]]\nmodels = ["resnet50"]\ntargets = ["tvm"]\n',
            "'level' is missing",
        ),
        (MODEL_RUN.replace('"model"', '"graph"'), "'level' must be one of op, model, llm"),
        (MODEL_RUN + 'batch = "8"\n', "'batch' must be a non-empty list of positive integers"),
        (MODEL_RUN + "batch = [0]\n", "'batch' must be a non-empty list of positive integers"),
        (MODEL_RUN + 'pipelines = "int8"\n', "'pipelines' must be a non-empty list, got 'int8'"),
        (
            MODEL_RUN.replace("resnet50", "resnet5"),
            "'models' names no zoo model and no .onnx file: 'resnet5'",
        ),
        (
            MODEL_RUN.replace('"onnxruntime"', '"tpu9"'),
            "'targets' names no registered target 'tpu9' (known: ",
        ),
        (
            MODEL_RUN.replace('"onnxruntime"', '"onnxruntime{thread=2}"'),
            "'targets' target 'onnxruntime': unknown option 'thread'",
        ),
        (
            MODEL_RUN.replace('"onnxruntime"', '"onnxruntime{threads=2"'),
            "'targets' 'onnxruntime{threads=2': missing '}' after the options",
        ),
        (MODEL_RUN + 'pipelines = ["", "int9"]\n', "'pipelines' is not a valid pipeline"),
        (MODEL_RUN + 'suites = ["default"]\n', "'suites' does not apply to level model"),
        (MODEL_RUN + "gen_len = 8\n", "'gen_len' does not apply to level model"),
        (
            '[[runs]]\nlevel = "model"\ntargets = ["tvm"]\n',
            "'models' is missing (level model needs it)",
        ),
        (MODEL_RUN + 'hardware = "h9000"\n', "'hardware' unknown hardware 'h9000'"),
        (MODEL_RUN + 'scenario = "burst"\n', "'scenario' must be one of single-stream"),
        (MODEL_RUN + "seed = -1\n", "'seed' must be an integer of at least 0"),
        (
            MODEL_RUN.replace("resnet50", "smollm2-135m") + "batch = [1]\n",  # batch given too
            "'models' 'smollm2-135m': 'smollm2-135m' generates text",
        ),
        (
            MODEL_RUN + 'scenario = "server"\n',
            "model 'resnet50' with this run's settings: the server scenario needs an arrival "
            "rate: --server-qps > 0",
        ),
        (
            MODEL_RUN.replace("resnet50", "smollm2-135m").replace('"model"', '"llm"')
            + 'scenario = "multi-stream"\n',
            "model 'smollm2-135m' with this run's settings: ",
        ),
        (
            '[[runs]]\nlevel = "op"\nsuites = ["default"]\ntargets = ["numpy{threads=2}"]\n',
            "'targets' 'numpy{threads=2}': a kernel provider takes no options",
        ),
        (
            '[[runs]]\nlevel = "op"\nsuites = ["nightly"]\ntargets = ["numpy"]\n',
            "'suites' names no shipped suite (cpu-headline, default) and no .toml file",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_file_the_run_and_the_field(
    tmp_path: Path, second_run: str, message: str
) -> None:
    path = _file(tmp_path, MODEL_RUN + second_run)
    with pytest.raises(SweepError) as raised:
        load_sweep(path)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: runs[1]: ")
    assert message in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('nmae = "lab"\n' + MODEL_RUN, "'nmae' is not a sweep field (known: name, runs)"),
        ('name = "lab"\n', "needs at least one [[runs]] table"),
        ("name = 3\n" + MODEL_RUN, "'name' must be a string, got 3"),
        ("[[runs]\n", "not valid TOML"),
    ],
)
def test_bad_top_level_input_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(SweepError) as raised:
        load_sweep(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_the_sweep_is_named_after_its_file_unless_it_says(tmp_path: Path) -> None:
    assert load_sweep(_file(tmp_path, MODEL_RUN, "lab-a.toml")).name == "lab-a"
    assert load_sweep(_file(tmp_path, 'name = "night"\n' + MODEL_RUN)).name == "night"


def test_dry_run_json_prints_the_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # a dry run without a cluster needs no Ray
    path = _file(tmp_path, ISSUE_EXAMPLE)
    assert main(["sweep", str(path), "--dry-run", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"jobs": [job.to_json() for job in load_sweep(path).jobs()]}
    assert list(printed["jobs"][0]) == [
        "id",
        "run",
        "level",
        "model",
        "suite",
        "target",
        "pipeline",
        "batch",
        "scenario",
        "hardware",
        "settings",
    ]


def test_dry_run_lists_each_job_with_what_its_node_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, MODEL_RUN + 'hardware = "nvidia-h200"\nbatch = [4]\n')
    (job,) = load_sweep(path).jobs()
    assert main(["sweep", str(path), "--dry-run"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if job.id in line)
    assert "any node with target:onnxruntime and hardware:nvidia-h200" in row


def test_where_a_job_could_run_on_a_cluster(tmp_path: Path) -> None:
    job = _one_job(tmp_path, MODEL_RUN + 'hardware = "nvidia-h200"\nbatch = [4]\n')
    gpu = {"bench_slot": 1.0, "target:onnxruntime": 1.0, "hardware:nvidia-h200": 1.0}
    cpu = {"bench_slot": 1.0, "target:onnxruntime": 1.0, "hardware:host": 1.0}
    assert where_it_could_run(job, {"gpu-1 (10.0.0.2)": gpu, "cpu-1 (10.0.0.3)": cpu}) == (
        "gpu-1 (10.0.0.2)"
    )
    assert where_it_could_run(job, {"cpu-1 (10.0.0.3)": cpu}) == (
        "no node can run it: needs hardware:nvidia-h200"
    )


def test_without_ray_a_sweep_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    path = _file(tmp_path, ISSUE_EXAMPLE)
    for argv in (["sweep", str(path)], ["sweep", str(path), "--dry-run", "--address", "auto"]):
        assert main(argv) == 2
        assert capsys.readouterr().err == f"runner: error: {RAY_MISSING}\n"


def test_a_bad_sweep_file_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, MODEL_RUN.replace("onnxruntime", "tpu9"))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"runner: error: {path}: runs[0]: 'targets' names no registered")
    assert error.count("\n") == 1


def test_the_example_in_the_docs_loads(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "sweeps.md"
    (example,) = re.findall(r"```toml\n(.*?)```", docs.read_text(encoding="utf-8"), re.S)
    sweep = load_sweep(_file(tmp_path, example))
    assert sweep.name == "lab"
    assert [run.level for run in sweep.runs] == ["model", "model", "llm", "op"]
    assert sum(job.run == 0 for job in sweep.jobs()) == 16  # as the page says
