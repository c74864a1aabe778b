"""A fake compiled session for the LoadGen tests: a known latency (a sleep) and outputs that
say which input batch they came from, in two dtypes, so a mixed-up or truncated response
shows."""

from __future__ import annotations

import time

import numpy as np


class SleepingSession:
    """run(batch_index) sleeps `delay_s` and returns outputs that depend on the index; every
    call's index is kept in `calls`. `fail_on_call` (1-based) raises ValueError instead."""

    def __init__(self, delay_s: float, batch_size: int, fail_on_call: int | None = None) -> None:
        self.delay_s = delay_s
        self.batch_size = batch_size
        self.fail_on_call = fail_on_call
        self.calls: list[int] = []

    def outputs(self, index: int) -> list[np.ndarray]:
        logits = np.arange(self.batch_size * 3, dtype=np.float32).reshape(self.batch_size, 3)
        labels = np.arange(self.batch_size, dtype=np.int64) - 7 * index
        return [logits / 7 + index, labels]

    def __call__(self, index: int) -> list[np.ndarray]:
        self.calls.append(index)
        if len(self.calls) == self.fail_on_call:
            raise ValueError(f"device lost on batch {index}\nsecond line of the report")
        time.sleep(self.delay_s)
        return self.outputs(index)
