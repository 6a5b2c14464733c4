"""A real local-mode worker (``tdauto worker storage``) on the local broker: it survives a
message for an unknown task (Celery logs and rejects it: the row goes to the bad table) and
a corrupt row, and still answers the pidbox (ping, add_consumer) afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdauto import AutomationSystems
from tdauto.app import broker_folder
from tdauto.localbroker import counts
from tests.support.localbroker import insert_raw, rows

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[AutomationSystems, subprocess.Popen[bytes], Path]]:
    data = tmp_path / "data"
    system = AutomationSystems(data_dir=data, host="lb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDAUTO_")}
    env.update(TDAUTO_DATA_DIR=str(data), TDAUTO_HOST="lb", PYTHONPATH=str(REPO))
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "tdauto.cli", "worker", "storage"],
                                  env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not system.app.control.ping(destination=["storage@lb"], timeout=0.5):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
        yield system, worker, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        system.app.close()


def test_a_worker_survives_an_unknown_task_and_a_corrupt_row(
    local: tuple[AutomationSystems, subprocess.Popen[bytes], Path],
) -> None:
    system, worker, log = local
    folder = broker_folder(system._rt.settings)
    insert_raw(folder, "tdauto.control", '{"body": "eyJ')  # truncated
    system.app.send_task("no.such.task", args=[], queue="tdauto.control")
    deadline = time.monotonic() + 20
    while counts(folder)["bad"] < 2:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    reasons = sorted(r for (r,) in rows(folder, "SELECT reason FROM bad"))
    assert reasons[0].startswith("not JSON") and reasons[1].startswith("rejected by its consumer")
    assert worker.poll() is None
    assert system.app.control.ping(destination=["storage@lb"], timeout=2)
    replies = system.app.control.add_consumer("tdauto.extra", destination=["storage@lb"],
                                              reply=True, timeout=2)
    assert replies and "ok" in replies[0]["storage@lb"]
    text = log.read_text()
    assert "unregistered task" in text.lower() and "moved to the bad table" in text
    assert counts(folder)["held"] == 0
