"""Hardware costs for per-dollar and per-watt figures: the database's price and TDP, the
user's figures for hardware it lacks, and the arithmetic of both kinds of price."""

from __future__ import annotations

import pytest

from ir.errors import AsicperfError
from runner.report.costs import CostOverride, Costs, hardware_costs, parse_override
from targets.hardware.database import get


def test_a_database_product_brings_its_price_and_tdp() -> None:
    spec = get("nvidia-h200")
    costs = hardware_costs("nvidia-h200", {})
    assert spec.price is not None and spec.price.kind == "cloud-hourly"
    assert costs == Costs(spec.price.usd, True, spec.tdp_w, "hardware database: nvidia-h200")


def test_the_host_is_priced_from_the_command_line() -> None:
    overrides = dict([parse_override("host=0.089/h", "--price")])
    name, watts = parse_override("host=7.5", "--watts")
    overrides[name] = overrides[name].merge(watts)
    costs = hardware_costs("host", overrides)
    assert costs == Costs(
        0.089, True, 7.5, "not in the hardware database; given on the command line"
    )
    assert hardware_costs("host", {}) == Costs(None, False, None, "not in the hardware database")


def test_a_given_figure_overrides_the_database() -> None:
    costs = hardware_costs("nvidia-h200", {"nvidia-h200": CostOverride(usd=30000.0, hourly=False)})
    assert (costs.usd, costs.hourly, costs.watts) == (30000.0, False, get("nvidia-h200").tdp_w)
    assert costs.source.endswith("; given on the command line")


def test_per_dollar_and_per_watt_arithmetic() -> None:
    hourly = Costs(2.0, True, 400.0, "given")
    assert hourly.per_dollar(100.0) == pytest.approx(100.0 * 3600 / 2.0)  # samples per $
    assert hourly.per_watt(100.0) == pytest.approx(0.25)
    bought = Costs(10000.0, False, None, "given")
    assert bought.per_dollar(100.0) == pytest.approx(10.0)  # samples/s per $1000
    assert bought.per_watt(100.0) is None
    assert Costs(None, False, None, "none").per_dollar(100.0) is None


@pytest.mark.parametrize(
    ("text", "option", "message"),
    [
        ("host", "--price", "expected HW=VALUE"),
        ("host=cheap", "--price", "price must be USD or USD/h"),
        ("host=1/day", "--price", "price must be USD or USD/h"),
        ("host=0", "--watts", "watts must be a positive number"),
        ("=5", "--watts", "expected HW=VALUE"),
    ],
)
def test_bad_figures_are_one_line_errors(text: str, option: str, message: str) -> None:
    with pytest.raises(AsicperfError, match=message):
        parse_override(text, option)
