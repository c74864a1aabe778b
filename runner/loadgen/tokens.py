"""A token-streaming session (LLMs) as a LoadGen sample server: LoadGen times the first token
(TTFT) and the tokens after it (TPOT) from what the session reports while it generates.

`TokenStream` is what such a session offers: given an input (the QSL sample index, as a
batch index is for `RunBatch`) it yields the generated token ids in chunks as they come, a
chunk being an integer array of one or more tokens (one decoding step; a speculative or
multi-token step yields several): [tokens] for one sequence, or [batch, tokens] for a static
batch of sequences generated in lockstep. The first non-empty chunk is reported at once through
`lg.FirstTokenComplete`, which is the sample's TTFT, and the sample completes when the stream
ends, with the number of tokens generated per sequence (a chunk's last axis), from which
LoadGen computes its TPOT: each sequence's pace, whatever the batch. So a session must yield
each chunk as soon as it exists: the figures are only as true as the stream.

The response (accuracy runs) is the token ids of every chunk, concatenated, in the dtype the
session yields; LoadGen logs it as `data`, the first chunk as `token_data`, and the count as
`token_count` in mlperf_log_accuracy.json. A performance run sends no bytes (LoadGen keeps none
then), only the count.

LoadGen needs every sample's first token before its completion, so one is always reported:
when the stream ends or fails before any token, an empty one (LoadGen then logs an error for
the count, and a failure is raised after the run, as for any session: sut.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import mlperf_loadgen as lg
import numpy as np

from runner.loadgen.responses import response_bytes
from runner.loadgen.serving import SampleServer, TokenResponse

TokenStream = Callable[[int], Iterable[np.ndarray]]  # sample index -> its token chunks


def token_server(generate: TokenStream, *, with_responses: bool) -> SampleServer:
    """Serves a sample by streaming it from `generate`. With responses (accuracy runs) the
    tokens go to LoadGen's accuracy log; without (performance runs) they are only counted."""

    def serve(sample: lg.QuerySample) -> TokenResponse:
        kept: list[np.ndarray] = []
        count = 0
        try:
            for chunk in generate(sample.index):
                tokens = np.ascontiguousarray(chunk)
                if tokens.size and not count:
                    _report_first_token(sample, tokens if with_responses else None)
                count += tokens.shape[-1] if tokens.size else 0
                if with_responses:
                    kept.append(tokens.ravel())
        finally:
            if not count:
                _report_first_token(sample, None)
        data = response_bytes([np.concatenate(kept)]) if kept else b""
        return TokenResponse(data, count)

    return serve


def _report_first_token(sample: lg.QuerySample, tokens: np.ndarray | None) -> None:
    """LoadGen copies the bytes before it returns, so `tokens` need live only this long."""
    if tokens is None:
        response = lg.QuerySampleResponse(sample.id, 0, 0)
    else:
        response = lg.QuerySampleResponse(sample.id, tokens.ctypes.data, tokens.nbytes)
    lg.FirstTokenComplete([response])
