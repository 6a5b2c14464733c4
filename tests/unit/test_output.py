"""A command that floods its output: the run still ends, its execution log and record stay
within their caps (head, a "[N bytes of output dropped]" line, tail), and the worker's own log
(what propagates to the root logger) gets none of it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tdauto.actions import REGISTRY, load_plugins
from tdauto.actions.output import BoundedOutput
from tdauto.engine.runtime import Runtime
from tdauto.models import ExecutionStatus
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support.engine import Recorder, add, drive, trigger

LOG_CAP = 200_000
LAST = 3_000_000  # `seq 1 LAST` prints 20.9 MB


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data", shell_allow=["seq"], log_max_bytes=LOG_CAP)
    return Runtime(settings, FileStore(settings.data_path, LOG_CAP), REGISTRY, Recorder())


def test_a_flood_of_output_ends_succeeded_and_stays_out_of_the_worker_log(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    task = add(rt, "flood", [{"type": "shell", "params": {"argv": ["seq", "1", str(LAST)]}}])

    ex = drive(rt, trigger(rt, task))

    assert ex.status is ExecutionStatus.SUCCEEDED, ex.error
    log = rt.store.read_log(ex.id)
    assert len(log.encode()) <= LOG_CAP
    assert "seq: 1\n" in log and f"seq: {LAST}\n" in log
    assert "bytes of output dropped]" in log
    assert "log truncated" not in log  # the head, the note and the tail all fit
    output = ex.actions[0].output
    assert output["exit_code"] == 0 and output["output_truncated"] is True
    assert len(output["output"].encode()) <= 64_000
    worker_log = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("running ") for m in worker_log)  # the action's own messages
    assert not [m for m in worker_log if m.startswith("seq: ")]  # never its command's output


def test_the_dropped_note_counts_the_bytes_between_head_and_tail() -> None:
    logged: list[str] = []
    stream = b"".join(b"%d\n" % n for n in range(1, 100_001))
    out = BoundedOutput(4_000, logged.append)
    for start in range(0, len(stream), 4096):
        out.feed(stream[start : start + 4096])

    text = out.finish()

    assert text.split("\n") == logged
    assert logged[0] == "1" and logged[-1] == "100000"
    note = next(line for line in logged if line.endswith("bytes of output dropped]"))
    kept = sum(len(line) + 1 for line in logged if line != note)
    assert note == f"[{len(stream) - kept} bytes of output dropped]"
    assert len(text) <= 4_000


def test_one_endless_line_is_bounded_too() -> None:
    logged: list[str] = []
    out = BoundedOutput(4_000, logged.append)
    for _ in range(100):
        out.feed(b"x" * 100_000)

    text = out.finish()

    assert text == "[10000000 bytes of output dropped]"
    assert logged == [text]
