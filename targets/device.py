"""How targets name the device they run on."""

from __future__ import annotations

import functools

from targets.hardware.host import detect_cpu


@functools.cache
def host_device() -> str:
    """`cpu: <model> (<threads> threads)` for this machine."""
    cpu = detect_cpu()
    return f"cpu: {cpu.model} ({cpu.threads} threads)"
