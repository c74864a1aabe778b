"""Scenarios on MLPerf LoadGen: asicperf's System Under Test and Query Sample Library over one
compiled session, LoadGen's settings filled from asicperf's, and LoadGen's logs read back.

How a run maps to LoadGen (the figures and the verdict are LoadGen's, never recomputed here):

- A LoadGen *sample* is one input batch of b items, b being the batch size measured: the
  compiled session runs b items at once. The QSL holds the distinct input batches supplied
  (total and performance sample count = their number); they are in memory already, so its
  load and unload callbacks do nothing.
- SingleStream: a query is one batch. MultiStream: a query is `samples_per_query` batches run
  back to back, and the query's latency is the figure. Server: one batch per query, arriving
  at server_qps / b per second (server_qps counts items), judged against the latency bound.
  Offline: LoadGen's one query holds every sample, run back to back.
- Items per second = LoadGen's samples (batches) per second x b.

Modules, one job each:
    settings.py      `LoadgenSettings`: what asicperf fills, checked before anything runs
    lg_settings.py   `to_test_settings`: those settings as LoadGen's `TestSettings`
    warmup.py        `fastest_batch_s`: the warm-up, which also tells LoadGen what to expect
    serving.py       `batch_server`: runs one sample (batch) and makes its response bytes
    sut.py           `BatchSut`: LoadGen's issue callback, serving each sample in turn
    failure.py       `SessionFailure`: a session's exception, kept until LoadGen returns
    progress.py      `Tick` and the fraction of the minimum run done
    responses.py     `ArraySpec`, the response byte layout of a batch's outputs
    accuracy_log.py  `read_accuracy_log`: mlperf_log_accuracy.json back into outputs
    log_files.py     `LoadgenLogFiles`, `log_settings`: where LoadGen writes its logs
    detail_log.py    `read_detail_log`: the ":::MLLOG" entries, errors and warnings
    performance.py   `LoadgenPerformance`: the verdict, reasons and figures of a run
    run.py           `run_loadgen` (batches), `run_server` and `run_sut` (any `SampleServer`)
    task_accuracy.py `accuracy_under_loadgen`: a zoo task's metric from LoadGen's accuracy log
    tokens.py        `token_server`: a token-streaming session (LLMs), first token reported
    token_latencies.py `token_latencies_of`: LoadGen's TTFT and TPOT from its detail log
    token_run.py     `run_token_loadgen`: a token run with token latencies on
    sample_trace.py  `sample_timings`: each sample's TTFT and latency from LoadGen's trace
    goodput.py       `goodput`: the Server requests that met every token bound, per second
"""
