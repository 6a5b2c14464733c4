"""``tdauto task run`` names its run at once, and a wait that ends before the run does
(``--timeout``, Ctrl-C) says which run goes on and how to follow it (issue #19, part 3). Run
as a person does, in a subprocess; no worker runs, so the run stays QUEUED."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.cli import definition
from tests.support.up import REPO, local_env, read_until, tdauto

FOLLOW = "follow it with: tdauto exec logs {} --follow"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = local_env(tmp_path / "data", COLUMNS="1000")
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(definition("nightly")))
    tdauto(env, "task", "create", "-f", str(task_file))
    return env


def _started(stdout: str) -> str:
    match = re.match(r"started ([0-9a-f]{32})\n", stdout)
    assert match, stdout
    return match.group(1)


def test_a_timeout_prints_the_run_id_first_and_how_to_follow_it(env: dict[str, str]) -> None:
    proc = tdauto(env, "task", "run", "nightly", "--wait", "--timeout", "0.5", check=False)
    run_id = _started(proc.stdout)  # the first line, before the wait
    assert proc.returncode == 1
    # no worker here: a warning says why it waits, and the last line names the run
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: run {run_id} is still QUEUED after 0.5s")
    assert last.endswith(f"; {FOLLOW.format(run_id)}")
    listed = tdauto(env, "exec", "list", "--json").stdout
    assert [e["id"] for e in json.loads(listed)] == [run_id]


def test_ctrl_c_while_waiting_prints_the_run_id_and_how_to_follow_it(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "task", "run", "nightly", "--wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    guard = threading.Timer(120, proc.kill)  # a line that never comes fails, not hangs
    guard.start()
    try:
        # the id comes while the command still waits (no timeout: only Ctrl-C ends it)
        run_id = _started(read_until(proc.stdout, "started", proc, 120))
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate()
    finally:
        guard.cancel()
    assert proc.returncode == 130
    assert "Traceback" not in stderr + stdout and "KeyboardInterrupt" not in stderr
    assert stderr.strip() == f"stopped waiting; run {run_id} goes on: {FOLLOW.format(run_id)}"


def test_without_wait_the_one_line_is_the_run_id(env: dict[str, str]) -> None:
    proc = tdauto(env, "task", "run", "nightly")
    run_id = _started(proc.stdout)
    assert proc.stdout == f"started {run_id}\n"
    shown = json.loads(tdauto(env, "exec", "show", run_id[:6], "--json").stdout)
    assert shown["id"] == run_id and shown["status"] == "QUEUED"
