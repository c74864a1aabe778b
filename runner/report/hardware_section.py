"""The report's hardware comparison: each model result's best throughput per dollar and per
watt, next to what the database's datasheets promise per dollar and per watt, so a buyer sees
measured and published figures side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runner.report.charts import hbar_chart
from runner.report.costs import CostOverride, hardware_costs
from runner.report.markup import Markup, color, figure, grid, note, number, section, table
from runner.report.readings import label
from runner.results.model import ModelResult
from runner.results.op import OpResult
from targets.hardware.compare import compare
from targets.hardware.database import all_specs
from targets.hardware.spec import unit

UNKNOWN = Markup('<span class="nowrap">unknown: pass --price/--watts</span>')
MEASURED_HEADERS = (
    "result",
    "hardware",
    "best samples/s",
    "price",
    "throughput per $",
    "power (W)",
    "samples/s per W",
    "cost source",
)


def hardware_section(
    models: Sequence[ModelResult], ops: Sequence[OpResult], overrides: Mapping[str, CostOverride]
) -> str:
    measured = table(MEASURED_HEADERS, [_cost_row(r, overrides) for r in models], (2, 4, 5, 6))
    body = ("<h3>Measured</h3>" + measured if models else "") + _datasheets(models, ops)
    intro = (
        "Measured throughput at the best batch per dollar and per watt, then the database's "
        "published dense peaks per dollar and per watt. Hourly (cloud) and list prices never "
        "share a chart."
    )
    return section("hardware", "Hardware comparison", intro, body)


def _cost_row(result: ModelResult, overrides: Mapping[str, CostOverride]) -> list[object]:
    hardware = result.target_info.hardware
    chosen = result.best()
    qps = chosen.qps if chosen else None
    return [
        label(result),
        hardware or "unknown",
        number(qps),
        *cost_cells(hardware, qps, overrides),
    ]


def cost_cells(
    hardware: str | None, qps: float | None, overrides: Mapping[str, CostOverride]
) -> list[object]:
    """Price, throughput per $, power, samples/s per W and where the figures come from, for
    `qps` samples/s on `hardware`; "unknown" with the options that give what is missing."""
    costs = hardware_costs(hardware, overrides)
    if costs.usd is None:
        price: object = UNKNOWN
    else:
        price = f"${number(costs.usd)}" + ("/h" if costs.hourly else " list")
    per_dollar = costs.per_dollar(qps) if qps is not None else None
    per_watt = costs.per_watt(qps) if qps is not None else None
    return [
        price,
        f"{number(per_dollar)} {costs.per_dollar_unit}" if per_dollar is not None else UNKNOWN,
        number(costs.watts) if costs.watts else UNKNOWN,
        number(per_watt) if per_watt is not None else UNKNOWN,
        costs.source,
    ]


def datasheet_dtypes(models: Sequence[ModelResult], ops: Sequence[OpResult]) -> list[str]:
    """fp16 always (the common accelerator figure), and int8 when a result ran int8."""
    names = [r.pipeline or "" for r in models] + [c.dtype for r in ops for c in r.cases]
    return ["fp16", *(["int8"] if any("int8" in name for name in names) else [])]


DATASHEET_METRICS = (  # (chart, ComparisonRow field, unit after the peak's)
    ("per watt (TDP)", "peak_per_watt", "per W"),
    ("per $ per hour (cloud)", "peak_per_usd_hour", "per $/h"),
    ("per $1000 (list price)", "peak_per_1000_usd", "per $1000"),
)


def _datasheets(models: Sequence[ModelResult], ops: Sequence[OpResult]) -> str:
    figures, missing = [], []
    for dtype in datasheet_dtypes(models, ops):
        rows = compare(all_specs(), dtype).rows
        for index, (kind, field, per) in enumerate(DATASHEET_METRICS):
            axis = f"peak dense {dtype} {unit(dtype)} {per}"
            values = [(row.name, getattr(row, field)) for row in rows]
            bars = [(name, v, f"{name}: {number(v)} {axis}") for name, v in values if v]
            if not bars:
                missing.append(f"{dtype} {kind}")
                continue
            title = f"Datasheet: {dtype} {unit(dtype)} {kind}"
            figures.append(figure(title, hbar_chart(bars, color(index + 3), axis, title)))
    left_out = note(
        "Products that publish no peak for the dtype, or no price or TDP, are left out"
        + (f"; none has a figure for {', '.join(missing)}." if missing else ".")
    )
    return "<h3>Datasheets</h3>" + grid(figures) + left_out
