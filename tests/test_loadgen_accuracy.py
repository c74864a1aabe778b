"""LoadGen's accuracy mode: every batch is issued once, its outputs travel as response bytes
into mlperf_log_accuracy.json, and read back they equal what the session returned, byte for
byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ir.errors import AsicperfError
from runner.loadgen.accuracy_log import read_accuracy_log
from runner.loadgen.responses import ArraySpec, outputs_from_bytes, response_bytes
from runner.loadgen.run import run_loadgen
from runner.loadgen.settings import LoadgenSettings
from tests.loadgen_fakes import SleepingSession

BATCHES = 5


def accuracy_run(scenario: str, log_dir: Path) -> tuple[SleepingSession, dict]:
    session = SleepingSession(0.0005, batch_size=2)
    extra = {"server_qps": 400.0, "latency_bound_ms": 50.0} if scenario == "server" else {}
    settings = LoadgenSettings(scenario=scenario, min_duration_s=10.0, min_queries=64, **extra)
    run = run_loadgen(
        settings, session, batch_count=BATCHES, batch_size=2, log_dir=log_dir, accuracy=True
    )
    assert run.performance is None and run.items_per_s is None and run.errors == ()
    layout = [ArraySpec.of(output) for output in session.outputs(0)]
    return session, read_accuracy_log(run.files.accuracy, layout)


@pytest.mark.parametrize("scenario", ["single-stream", "server", "offline"])
def test_every_batch_once_and_its_outputs_read_back_exactly(scenario: str, tmp_path: Path) -> None:
    session, outputs = accuracy_run(scenario, tmp_path)
    assert sorted(session.calls) == list(range(BATCHES))  # no warm-up, no repeat
    assert sorted(outputs) == list(range(BATCHES))
    for index, read_back in outputs.items():
        returned = session.outputs(index)
        assert [a.dtype for a in read_back] == [np.dtype(np.float32), np.dtype(np.int64)]
        assert [a.tobytes() for a in read_back] == [a.tobytes() for a in returned]
        assert [a.shape for a in read_back] == [(2, 3), (2,)]


def test_multi_stream_pads_its_query_and_each_batch_reads_back_once(tmp_path: Path) -> None:
    session, outputs = accuracy_run("multi-stream", tmp_path)
    assert len(session.calls) == 8  # one query of LoadGen's 8 samples: 5 batches, 3 again
    assert set(session.calls) == set(range(BATCHES))
    assert sorted(outputs) == list(range(BATCHES))
    assert np.array_equal(outputs[3][1], session.outputs(3)[1])


def test_response_bytes_are_the_outputs_raw_bytes_in_order() -> None:
    outputs = [np.array([[1.5, -2.0]], dtype=np.float16), np.array([7], dtype=np.uint8)]
    data = response_bytes(outputs)
    assert data == outputs[0].tobytes() + b"\x07"
    layout = [ArraySpec("float16", (1, 2)), ArraySpec("uint8", (1,))]
    assert [spec.nbytes for spec in layout] == [4, 1]
    back = outputs_from_bytes(data, layout, "here")
    assert back[0].tolist() == [[1.5, -2.0]] and back[1].tolist() == [7]
    transposed = np.arange(6, dtype=np.int32).reshape(2, 3).T  # not C-contiguous
    assert response_bytes([transposed]) == np.ascontiguousarray(transposed).tobytes()


def test_a_response_of_the_wrong_length_is_refused() -> None:
    layout = [ArraySpec("float32", (2, 2)), ArraySpec("int8", (3,))]
    with pytest.raises(AsicperfError) as raised:
        outputs_from_bytes(b"\x00" * 10, layout, "sample 4")
    expected = "sample 4: 10 response bytes, but outputs float32[2, 2], int8[3] take 19"
    assert str(raised.value) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"qsl_idx": 0}', "expected a JSON list of LoadGen responses"),
        ('[{"qsl_idx": 0}]', "entry 0: 'data' is None, not a hex string"),
        ('[{"qsl_idx": -1, "data": ""}]', "entry 0: 'qsl_idx' is -1, not a sample index"),
        ('[{"qsl_idx": 0, "data": "0G"}]', "entry 0: 'data' is not hex"),
        ('[{"qsl_idx": 2, "data": "00"}]', "entry 0 (batch 2): 1 response bytes, but"),
    ],
)
def test_a_bad_accuracy_log_is_one_line_naming_the_file(
    content: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(content)
    with pytest.raises(AsicperfError) as raised:
        read_accuracy_log(path, [ArraySpec("int64", (1,))])
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_an_accuracy_log_entry_is_hex_of_the_response(tmp_path: Path) -> None:
    path = tmp_path / "mlperf_log_accuracy.json"
    logits = np.array([0.25, 4.0], dtype=np.float32)
    path.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 3, "data": logits.tobytes().hex()}]))
    read = read_accuracy_log(path, [ArraySpec("float32", (2,))])
    assert list(read) == [3] and read[3][0].tolist() == [0.25, 4.0]
