"""Each sample's first-token and completion times, from LoadGen's trace (mlperf_log_trace.json).

The detail log holds only LoadGen's summary of a token run (percentiles of TTFT and TPOT); a
figure per sample, such as goodput (goodput.py), needs the trace, which LoadGen writes when
`LogSettings.enable_trace` is on (log_files.py). Three of its events are read, as LoadGen 6.0
writes them, times in ns from the query's scheduled time, LoadGen's origin for every latency:

- `Sample` (phase "b"), one per completed sample: `sample_seq`, `complete_ns` (its latency) and
  `ts`, the query's scheduled time in µs;
- `Token` (phase "b"), outside Server, one per first token: the same `sample_seq`, and
  `complete_ns` the time to it, so several samples of one query (Offline, MultiStream) pair by
  sequence number;
- `Token_Latency` (a counter), in Server instead, without a sequence number: `ts` and
  `issue_delay` of its query, and TTFT = `issue_delay` + `issue_to_done`. A Server query is one
  sample, so the first token pairs with the sample of the same query: same `ts` and
  `issue_delay` (the sample's `issue_start_ns`).

These are the very numbers LoadGen ranks for its detail log: the least TTFT and the greatest
latency here are its `result_first_token_min_latency_ns` and `result_max_latency_ns`.

The file as a whole is not JSON (LoadGen writes its detail-log keys into it unescaped, as in
`"key":""loadgen_version""`), so it is read line by line and only those events' lines are
parsed: LoadGen writes one event per line. Its last event is `LastTrace`, written when LoadGen
closes the trace; without it the trace is incomplete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ir.errors import AsicperfError

NS_PER_MS = 1e6
_READ = ("Sample", "Token", "Token_Latency")  # the events read; each line starts with its name
_LAST = '{"name":"LastTrace"}'

FirstTokenKey = tuple[int] | tuple[float, int]  # (sample_seq,) or, in Server, (ts, issue delay)


@dataclass(frozen=True)
class SampleTokenTiming:
    """One sample, as LoadGen timed it from its query's scheduled time: to the first token
    (its TTFT) and to completion (its latency)."""

    sample_seq: int  # LoadGen's sequence number: the order samples were issued in
    ttft_ms: float
    latency_ms: float


def sample_timings(path: Path) -> tuple[SampleTokenTiming, ...]:
    """Every sample of the token run traced in `path`, in sample order; a missing, incomplete
    or corrupt trace is a one-line error naming the file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise AsicperfError(f"{path}: cannot read LoadGen's trace: {error}") from error
    if not any(line.rstrip(",") == _LAST for line in lines):
        raise AsicperfError(f"{path}: LoadGen's trace is incomplete (no LastTrace event)")
    samples: list[_Event] = []
    first_tokens: dict[FirstTokenKey, int] = {}
    for event in _events(lines, path):
        if event.name == "Sample":
            samples.append(event)
            continue
        key, ns = _first_token(event)
        if key in first_tokens:
            raise AsicperfError(f"{event.where}: a second first token for the same sample")
        first_tokens[key] = ns
    if not samples:
        raise AsicperfError(f"{path}: LoadGen's trace has no completed sample")
    if len(first_tokens) != len(samples):
        raise AsicperfError(
            f"{path}: LoadGen's trace has {len(first_tokens)} first tokens "
            f"for {len(samples)} samples"
        )
    timings = (_timing(sample, first_tokens) for sample in samples)
    return tuple(sorted(timings, key=lambda timing: timing.sample_seq))


@dataclass(frozen=True)
class _Event:
    name: str
    where: str  # file:line
    ts: float  # µs: the query's scheduled time
    args: Mapping[str, object]

    def integer(self, key: str) -> int:
        value = self.args.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise AsicperfError(f"{self.where}: a LoadGen {self.name} event without '{key}'")
        return value


def _events(lines: list[str], path: Path) -> list[_Event]:
    """The begin events (and counters) of the names read, in file order."""
    prefixes = {f'{{"name":"{name}",': name for name in _READ}
    events = []
    for number, line in enumerate(lines, start=1):
        name = prefixes.get(line[: line.find(",") + 1])
        if name is None or '"ph":"e"' in line:
            continue
        where = f"{path}:{number}"
        try:
            event = json.loads(line.rstrip().removesuffix(","))
            events.append(_Event(name, where, float(event["ts"]), dict(event["args"])))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise AsicperfError(f"{where}: a LoadGen {name} event that is not JSON") from error
    return events


def _first_token(event: _Event) -> tuple[FirstTokenKey, int]:
    """The sample a first-token event belongs to, and the ns to it from the scheduled time."""
    if event.name == "Token":
        return (event.integer("sample_seq"),), event.integer("complete_ns")
    delay = event.integer("issue_delay")
    return (event.ts, delay), delay + event.integer("issue_to_done")


def _timing(sample: _Event, first_tokens: Mapping[FirstTokenKey, int]) -> SampleTokenTiming:
    sequence = sample.integer("sample_seq")
    query = (sample.ts, sample.integer("issue_start_ns"))
    first_token_ns = first_tokens.get((sequence,), first_tokens.get(query))
    if first_token_ns is None:
        raise AsicperfError(f"{sample.where}: no first token in LoadGen's trace for this sample")
    return SampleTokenTiming(
        sample_seq=sequence,
        ttft_ms=first_token_ns / NS_PER_MS,
        latency_ms=sample.integer("complete_ns") / NS_PER_MS,
    )
