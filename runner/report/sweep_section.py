"""The report's sweep section: every product a sweep measured side by side, per model, pipeline
and scenario, one row per product (target with its options, hardware, device), its samples/s
at each batch size and at its best, per dollar and per watt; then the jobs that failed or that
no node could run, with their reasons. It is "compare with the product you use now" on
measured data: the same model and pipeline on each machine of the lab."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner.report.costs import CostOverride, hardware_costs
from runner.report.hardware_section import cost_cells
from runner.report.markup import Markup, badge, esc, note, number, section, table
from runner.report.sweep_folder import SweepFolder, SweepJob
from runner.results.model import ModelResult
from runner.sweep.job_record import STATUSES
from runner.sweep.summary import describe_job

PRODUCT_HEADERS = ("target", "hardware", "device", "nodes")
COST_HEADERS = (
    "best samples/s",
    "price",
    "throughput per $",
    "power (W)",
    "samples/s per W",
    "cost source",
)
FAILURE_HEADERS = ("job", "what", "status", "reason", "node", "attempts")


@dataclass(frozen=True)
class Product:
    """What a row compares: a target (with its options and the run's settings) on a piece of
    hardware, as its device reported itself."""

    target: str
    hardware: str
    device: str


def sweep_section(sweeps: Sequence[SweepFolder], overrides: Mapping[str, CostOverride]) -> str:
    body = "".join(_sweep(sweep, overrides) for sweep in sweeps)
    intro = (
        "Per model, pipeline and scenario, one row per product: samples/s at each batch size "
        "(one job each), the best valid one per dollar and per watt, then the jobs that failed "
        "or that no node could run. LLM and op-level jobs are in their own sections."
    )
    return section("sweep", "Sweep: products side by side", intro, body)


def _sweep(sweep: SweepFolder, overrides: Mapping[str, CostOverride]) -> str:
    statuses = [job.record.status for job in sweep.jobs]
    counts = ", ".join(
        f"{statuses.count(status)} {status}" for status in STATUSES if status in statuses
    )
    jobs = f"{len(statuses)} job{'s' if len(statuses) != 1 else ''}"
    heading = f"<h3>{esc(sweep.path)}: {jobs} ({esc(counts)})</h3>"
    groups = _groups(sweep.jobs)
    tables = "".join(_group_table(key, entries, overrides) for key, entries in groups.items())
    unpriced = sorted(
        {
            product.hardware
            for measured in groups.values()
            for product in _products(measured)
            if hardware_costs(product.hardware, overrides).usd is None
        }
    )
    if unpriced:
        tables += note(
            f"No price for {', '.join(unpriced)}: the hardware database has none (a node's own "
            "CPU, 'host', is in no database); give one with --price HW=USD or HW=USD/h, and "
            "its power with --watts HW=W."
        )
    return heading + tables + _failures(sweep.jobs)


@dataclass(frozen=True)
class Measured:
    """A done model-level job and its result."""

    job: SweepJob
    result: ModelResult

    @property
    def product(self) -> Product:
        settings = " ".join(
            f"{name}={json.dumps(value)}" for name, value in sorted(self.job.job.settings.items())
        )
        target = self.job.job.target + (f" ({settings})" if settings else "")
        info = self.result.target_info
        return Product(target, info.hardware or self.job.job.hardware or "unknown", info.device)


def _groups(jobs: Sequence[SweepJob]) -> dict[tuple[str, str, str], list[Measured]]:
    """The done model-level jobs by (model, pipeline, scenario as run), in the sweep's order."""
    groups: dict[tuple[str, str, str], list[Measured]] = {}
    for job in jobs:
        if isinstance(job.result, ModelResult):
            key = (str(job.job.model), job.job.pipeline, job.result.scenario)
            groups.setdefault(key, []).append(Measured(job, job.result))
    return groups


def _products(measured: Sequence[Measured]) -> list[Product]:
    return list(dict.fromkeys(entry.product for entry in measured))


def _group_table(
    key: tuple[str, str, str], measured: Sequence[Measured], overrides: Mapping[str, CostOverride]
) -> str:
    model, pipeline, scenario = key
    sizes = sorted({batch.batch_size for entry in measured for batch in entry.result.batches})
    rows = [
        _product_row(product, [m for m in measured if m.product == product], sizes, overrides)
        for product in _products(measured)
    ]
    headers = (*PRODUCT_HEADERS, *(f"batch {size} samples/s" for size in sizes), *COST_HEADERS)
    best = len(PRODUCT_HEADERS) + len(sizes)  # then price, per $, power, per W, source
    numeric = [*range(len(PRODUCT_HEADERS), best + 1), best + 2, best + 3, best + 4]
    title = f"{model} · {pipeline or 'no passes'} · {scenario}"
    return f"<h4>{esc(title)}</h4>" + table(headers, rows, numeric)


def _product_row(
    product: Product,
    measured: Sequence[Measured],
    sizes: Sequence[int],
    overrides: Mapping[str, CostOverride],
) -> list[object]:
    """Samples/s at each batch size (INVALID ones marked), the best valid one (by each
    result's own rule and latency bound) and its cost figures."""
    cells: dict[int, object] = {}
    for entry in measured:
        for batch in entry.result.batches:
            verdict = "" if batch.valid else " " + badge("INVALID", False).html
            cells[batch.batch_size] = Markup(esc(number(batch.qps)) + verdict)
    chosen = [best.qps for entry in measured if (best := entry.result.best()) is not None]
    qps = max(chosen) if chosen else None
    nodes = {entry.job.record.node.hostname for entry in measured if entry.job.record.node}
    return [
        product.target,
        product.hardware,
        product.device,
        ", ".join(sorted(nodes)) or None,
        *(cells.get(size) for size in sizes),
        number(qps),
        *cost_cells(product.hardware, qps, overrides),
    ]


def _failures(jobs: Sequence[SweepJob]) -> str:
    failed = [job for job in jobs if job.record.status != "done"]
    if not failed:
        return note("No job failed, and every job found a node that could run it.")
    rows = [
        [
            job.job.id,
            describe_job(job.job.to_json()),
            job.record.status,
            job.record.reason,
            job.record.node.label() if job.record.node is not None else None,
            job.record.attempts,
        ]
        for job in failed
    ]
    return "<h4>Jobs that failed or that no node could run</h4>" + table(FAILURE_HEADERS, rows)
