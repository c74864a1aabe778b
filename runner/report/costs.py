"""What hardware costs to buy or rent and to power: from the hardware database, or given on the
command line for hardware it lacks (the host a result ran on, usually), so that throughput can
be compared per dollar and per watt."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ir.errors import AsicperfError
from targets.hardware.database import UnknownHardwareError, get

_PRICE = re.compile(r"^(?P<usd>\d+(\.\d+)?)(?P<hourly>/h)?$")
_WATTS = re.compile(r"^\d+(\.\d+)?$")


@dataclass(frozen=True)
class CostOverride:
    """What the user said about one piece of hardware; None where they said nothing."""

    usd: float | None = None
    hourly: bool | None = None
    watts: float | None = None

    def merge(self, other: CostOverride) -> CostOverride:
        return replace(
            self,
            **{k: v for k, v in vars(other).items() if v is not None},
        )


@dataclass(frozen=True)
class Costs:
    """A price (per unit, or per hour when `hourly`) and a power draw, each with its source;
    either may be unknown."""

    usd: float | None
    hourly: bool
    watts: float | None
    source: str

    def per_dollar(self, samples_per_s: float) -> float | None:
        """Samples per dollar of an hour's rent, or samples/s per $1000 of list price."""
        if self.usd is None or self.usd <= 0:
            return None
        return samples_per_s * 3600 / self.usd if self.hourly else samples_per_s / self.usd * 1e3

    @property
    def per_dollar_unit(self) -> str:
        return "samples per $ (hourly rate)" if self.hourly else "samples/s per $1000 (list)"

    def per_watt(self, samples_per_s: float) -> float | None:
        return samples_per_s / self.watts if self.watts else None


def parse_override(text: str, option: str) -> tuple[str, CostOverride]:
    """`host=0.089/h` for --price, `host=350` for --watts; a one-line error otherwise."""
    name, _, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not name or not value:
        raise AsicperfError(f"{option} '{text}': expected HW=VALUE, e.g. host=0.089/h")
    if option == "--price":
        match = _PRICE.match(value)
        if match is None:
            raise AsicperfError(f"{option} '{text}': price must be USD or USD/h, e.g. 0.089/h")
        return name, CostOverride(usd=float(match["usd"]), hourly=bool(match["hourly"]))
    if not _WATTS.match(value) or float(value) <= 0:
        raise AsicperfError(f"{option} '{text}': watts must be a positive number")
    return name, CostOverride(watts=float(value))


def hardware_costs(hardware: str | None, overrides: Mapping[str, CostOverride]) -> Costs:
    """The database's price and TDP for `hardware`, with the user's figures taking precedence."""
    override = overrides.get(hardware or "", CostOverride())
    usd = hourly = watts = None
    source = "not in the hardware database"
    if hardware:
        try:
            spec = get(hardware)
        except UnknownHardwareError:
            spec = None
        if spec is not None:
            source = f"hardware database: {spec.slug}"
            if spec.price is not None:
                usd, hourly = spec.price.usd, spec.price.kind == "cloud-hourly"
            watts = spec.tdp_w
    if override != CostOverride():
        source = f"{source}; given on the command line"
    return Costs(
        usd=override.usd if override.usd is not None else usd,
        hourly=bool(override.hourly if override.hourly is not None else hourly),
        watts=override.watts if override.watts is not None else watts,
        source=source,
    )
