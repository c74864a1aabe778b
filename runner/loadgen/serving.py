"""Serving one LoadGen sample: what the SUT does between taking a sample and completing it.

A `SampleServer` runs the sample and returns the bytes its response carries; the SUT (sut.py)
does the timing and the completion, so a server never calls `QuerySamplesComplete` itself,
and a server that raises cannot leave a sample uncompleted. A token-streaming server (LLMs,
tokens.py) fits the same shape: it reports its first token with `lg.FirstTokenComplete` while
it runs, using `sample.id`, and returns a `TokenResponse`, whose token count the SUT passes to
LoadGen with the completion (LoadGen's TPOT is the time after the first token over the count
less one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mlperf_loadgen as lg
import numpy as np

from runner.loadgen.responses import response_bytes


@dataclass(frozen=True)
class TokenResponse:
    """A token server's response: its bytes (empty in a performance run) and the number of
    tokens generated, first token included."""

    data: bytes
    token_count: int


RunBatch = Callable[[int], Sequence[np.ndarray]]  # input batch index -> the session's outputs
SampleServer = Callable[[lg.QuerySample], bytes | TokenResponse]


def batch_server(run: RunBatch, *, with_responses: bool) -> SampleServer:
    """Runs the input batch a sample names (`sample.index`). With responses (accuracy runs)
    it returns the outputs' bytes for LoadGen's accuracy log; without (performance runs) it
    returns none, so serialising outputs costs nothing on the measured path."""

    def serve(sample: lg.QuerySample) -> bytes:
        outputs = run(sample.index)
        return response_bytes(outputs) if with_responses else b""

    return serve
