"""The warm-up before a performance run, which also tells LoadGen how long a batch takes.

The first runs of a compiled session pay for lazy initialisation (allocation, JIT, caches),
which no query should. Their fastest time is the expectation LoadGen needs (lg_settings.py):
a guess on the fast side only makes LoadGen generate more queries than it issues.
"""

from __future__ import annotations

import time

from runner.loadgen.failure import SessionFailure
from runner.loadgen.serving import RunBatch

WARMUP_RUNS = 3


def fastest_batch_s(run: RunBatch, batch_count: int, runs: int = WARMUP_RUNS) -> float:
    """Runs batches 0, 1, ... (cycling through the `batch_count` inputs) `runs` times and
    returns the fastest run in seconds; a run that raises is a one-line AsicperfError."""
    fastest = float("inf")
    for attempt in range(runs):
        index = attempt % batch_count
        start = time.perf_counter()
        try:
            run(index)
        except Exception as error:
            raise SessionFailure(f"warm-up batch {index}", error).as_error() from error
        fastest = min(fastest, time.perf_counter() - start)
    return fastest
