"""`runner report html` over a sweep folder: every done job's result in the usual sections, and
the sweep's side-by-side section: per model, pipeline and scenario one row per product with its
samples/s per batch size, per dollar and per watt, and the jobs that failed with their reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from report_documents import model_document, write

from runner.cli import main
from runner.report.markup import number
from runner.report.sweep_folder import is_sweep_folder, read_sweep_folder
from runner.sweep.job_record import JOB_FILE, JobRecord, NodeRef
from runner.sweep.jobs import Job, new_job
from targets.hardware.database import get
from tests.html_pages import section_of, table_rows

CPU_NODE = NodeRef(id="c" * 56, hostname="lab-cpu", ip="10.0.0.3")
GPU_NODE = NodeRef(id="9" * 56, hostname="lab-gpu", ip="10.0.0.2")
UNKNOWN = '<span class="nowrap">unknown: pass --price/--watts</span>'


def _job(target: str, pipeline: str, batch: int, hardware: str | None = None) -> Job:
    return new_job(
        0, "model", target=target, model="resnet50", pipeline=pipeline, batch=batch,
        hardware=hardware,
    )  # fmt: skip


def _done(
    out: Path, job: Job, qps: float, node: NodeRef, *, device: str = "cpu: Test CPU"
) -> dict[str, Any]:
    """A done job's folder: its result (one batch) and its record."""
    document = model_document("resnet50", job.target, job.pipeline or None, {job.batch: qps})
    document["target_info"].update(hardware=job.hardware or "host", device=device)
    write(out, job.id, document)
    _record(out, JobRecord(job=job.to_json(), status="done", node=node, attempts=1))
    return document


def _record(out: Path, record: JobRecord) -> None:
    folder = out / record.job_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JOB_FILE).write_text(json.dumps(record.to_json()), encoding="utf-8")


def _sweep_folder(out: Path) -> Path:
    """resnet50 without passes on onnxruntime (the host) and TVM (an H200) at batch 1 and 8,
    int8 on onnxruntime at batch 8 (one INVALID), one job failed and one no node could run."""
    for batch, qps in ((1, 100.0), (8, 400.0)):
        _done(out, _job("onnxruntime", "", batch), qps, CPU_NODE)
        _done(out, _job("tvm", "", batch, "nvidia-h200"), 3 * qps, GPU_NODE, device="NVIDIA H200")
    invalid = _done(out, _job("onnxruntime", "int8", 8), 800.0, CPU_NODE)
    invalid["batches"][0]["valid"] = False
    invalid["best_batch"] = None
    write(out, _job("onnxruntime", "int8", 8).id, invalid)
    failed = JobRecord(
        job=_job("tvm", "int8", 8, "nvidia-h200").to_json(),
        status="failed",
        reason="target 'tvm': QLinearConv is not supported",
        node=GPU_NODE,
        attempts=1,
    )
    _record(out, failed)
    lost = JobRecord(
        job=_job("tvm", "", 8, "nvidia-t4").to_json(),
        status="unschedulable",
        reason="no node can run it: needs hardware:nvidia-t4",
    )
    _record(out, lost)
    return out


def _page(tmp_path: Path, *options: str) -> str:
    out = _sweep_folder(tmp_path / "sweep-lab")
    page = tmp_path / "report.html"
    assert main(["report", "html", str(out), "-o", str(page), *options]) == 0
    return page.read_text(encoding="utf-8")


def test_products_side_by_side_with_figures_per_dollar_and_per_watt(tmp_path: Path) -> None:
    sweep = section_of(_page(tmp_path, "--price", "host=2/h", "--watts", "host=400"), "sweep")
    h200 = get("nvidia-h200")
    assert h200.price is not None and h200.price.kind == "cloud-hourly" and h200.tdp_w
    usd, watts = h200.price.usd, h200.tdp_w
    titles = sweep.split("<h4>")[1:]
    assert [title.split("</h4>")[0] for title in titles] == [
        "resnet50 · no passes · offline",
        "resnet50 · int8 · offline",
        "Jobs that failed or that no node could run",
    ]
    plain, int8, failures = (table_rows(title) for title in titles)
    assert plain == [
        [
            "onnxruntime",
            "host",
            "cpu: Test CPU",
            "lab-cpu",
            "100",
            "400",
            "400",
            "$2/h",
            "720,000 samples per $ (hourly rate)",  # 400 samples/s for 3600 s per $2
            "400",
            "1",  # 400 samples/s per 400 W
            "not in the hardware database; given on the command line",
        ],
        [
            "tvm",
            "nvidia-h200",
            "NVIDIA H200",
            "lab-gpu",
            "300",
            "1,200",
            "1,200",
            f"${number(usd)}/h",
            f"{number(1200.0 * 3600 / usd)} samples per $ (hourly rate)",
            number(watts),
            number(1200.0 / watts),
            "hardware database: nvidia-h200",
        ],
    ]
    assert int8 == [
        [
            "onnxruntime",
            "host",
            "cpu: Test CPU",
            "lab-cpu",
            '800 <span class="badge bad">INVALID</span>',
            "—",  # no valid batch size: nothing to price
            "$2/h",
            UNKNOWN,
            "400",
            UNKNOWN,
            "not in the hardware database; given on the command line",
        ]
    ]
    failed_job, lost_job = _job("tvm", "int8", 8, "nvidia-h200"), _job("tvm", "", 8, "nvidia-t4")
    assert failures == [  # in the sweep's order: no passes before int8
        [
            lost_job.id,
            "model resnet50 tvm pipeline none batch 8 on nvidia-t4",
            "unschedulable",
            "no node can run it: needs hardware:nvidia-t4",
            "—",
            "0",
        ],
        [
            failed_job.id,
            "model resnet50 tvm pipeline int8 batch 8 on nvidia-h200",
            "failed",
            "target &#x27;tvm&#x27;: QLinearConv is not supported",
            f"lab-gpu (10.0.0.2, {'9' * 8})",
            "1",
        ],
    ]
    assert "7 jobs (5 done, 1 failed, 1 unschedulable)" in sweep


def test_the_host_has_no_price_unless_given(tmp_path: Path) -> None:
    sweep = section_of(_page(tmp_path), "sweep")
    host_row = table_rows(sweep.split("<h4>")[1])[0]
    assert host_row[7:11] == [UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN]
    assert "No price for host: the hardware database has none" in sweep


def test_the_done_jobs_are_the_pages_results(tmp_path: Path) -> None:
    page = _page(tmp_path)
    summary = table_rows(section_of(page, "summary"))
    assert len(summary) == 5  # the done jobs; the failed and unschedulable have no result
    assert '<a href="#sweep">Sweep</a>' in page
    assert {row[-1] for row in summary} == {
        str(tmp_path / "sweep-lab" / _job(t, p, b, h).id)
        for t, p, b, h in (
            ("onnxruntime", "", 1, None),
            ("onnxruntime", "", 8, None),
            ("tvm", "", 1, "nvidia-h200"),
            ("tvm", "", 8, "nvidia-h200"),
            ("onnxruntime", "int8", 8, None),
        )
    }


def test_a_result_folder_is_no_sweep_folder(tmp_path: Path) -> None:
    single = write(tmp_path, "one", model_document())
    assert not is_sweep_folder(single)
    assert is_sweep_folder(_sweep_folder(tmp_path / "sweep"))


def test_a_job_record_that_is_not_one_names_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _sweep_folder(tmp_path / "sweep")
    broken = out / _job("tvm", "", 8, "nvidia-t4").id / JOB_FILE
    broken.write_text("{", encoding="utf-8")
    assert main(["report", "html", str(out), "-o", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err.startswith(f"runner: error: {broken}: not a job record")
    assert len(read_sweep_folder(_sweep_folder(tmp_path / "again")).jobs) == 7
