"""Providers with known defects, for the op benchmark's checks (named as `fake_providers:Class`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from microbench.ops import BenchCase
from microbench.providers.base import Kernel, Provider


class _Exact(Provider):
    """The op's reference itself, computed once: right, and as fast as a kernel can be."""

    name = "exact"

    def unsupported_reason(self, case: BenchCase) -> str | None:
        return None if case.op == "add" else "adds only"

    def prepare(self, case: BenchCase, inputs: Mapping[str, np.ndarray]) -> Kernel:
        answer = case.reference(dict(inputs))
        return Kernel(lambda: None, lambda: self.output(answer))

    def output(self, answer: np.ndarray) -> np.ndarray:
        return answer


class ExactProvider(_Exact):
    pass


class DeviceProvider(_Exact):
    """Runs "on" a product of the hardware database."""

    name = "device"
    hardware = "nvidia-h200"


class WrongProvider(_Exact):
    name = "wrong"

    def output(self, answer: np.ndarray) -> np.ndarray:
        return answer + np.float32(1.0)


class RaisingProvider(_Exact):
    name = "raising"

    def prepare(self, case: BenchCase, inputs: Mapping[str, np.ndarray]) -> Kernel:
        raise RuntimeError("driver lost\nsecond line")


class RacyProvider(_Exact):
    """Right on the first check, wrong once it has been run many times (a race)."""

    name = "racy"

    def prepare(self, case: BenchCase, inputs: Mapping[str, np.ndarray]) -> Kernel:
        answer = case.reference(dict(inputs))
        calls = [0]

        def run() -> None:
            calls[0] += 1

        return Kernel(run, lambda: answer if calls[0] < 2 else answer * np.float32(2.0))


class FixedDeviceTimer:
    """A device clock that always reports the same kernel time."""

    SECONDS = 2e-3

    def start(self) -> None:
        pass

    def stop(self) -> float:
        return self.SECONDS


class DeviceTimedProvider(DeviceProvider):
    """A device kernel whose samples come from its device timer, not from the host clock."""

    name = "device-timed"

    def prepare(self, case: BenchCase, inputs: Mapping[str, np.ndarray]) -> Kernel:
        kernel = super().prepare(case, inputs)
        return Kernel(kernel.run, kernel.result, device_timer=FixedDeviceTimer())
