"""What the parts of one benchmark share: the key a batch or LLM run file is stored with, so
`--resume` never combines figures measured under different settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunKey:
    """What batch results must share to be combined in one result (and resumed): everything
    that changes a batch's figures or its verdict."""

    ir_fingerprint: str
    target: str
    pipeline: str | None
    scenario: str
    loadgen: str  # LoadGen's version: another one may judge the same run differently
    settings: Mapping[str, Any]  # every LoadGen setting asicperf fills (LoadgenSettings)
    accuracy: Mapping[str, Any]  # the metric, its threshold and the data set fraction

    def to_json(self) -> dict[str, Any]:
        """In the order `difference` compares: a batch file measured before LoadGen, whose
        settings differ too, is named by its missing LoadGen version first."""
        return {
            "ir_fingerprint": self.ir_fingerprint,
            "target": self.target,
            "pipeline": self.pipeline,
            "scenario": self.scenario,
            "loadgen": self.loadgen,
            "settings": dict(self.settings),
            "accuracy": dict(self.accuracy),
        }

    def difference(self, stored: Mapping[str, Any]) -> str | None:
        """The first field where `stored` (another run's key) differs, as
        "name stored-value, this run value"; None when they match."""
        for name, value in _flat(self.to_json()).items():
            found = _flat(stored).get(name)
            if found != value:
                return f"{name} {found!r}, this run {value!r}"
        return None


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"settings": {"seed": 0}} -> {"settings.seed": 0}, so a difference names the setting."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
