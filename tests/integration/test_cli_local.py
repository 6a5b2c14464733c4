"""The whole system in local mode, through the CLI only: `tdauto up`, then manage and run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import REPO

TASK_YAML = """
name: Nightly cleanup
type: maintenance
schedule: daily
schedule_config: {hour: 3, minute: 30, timezone: Europe/Paris}
actions:
  - type: backup
    params: {target: database, keep: 3}
  - type: cleanup
    params: {older_than: 30days}
resources: {cpu: 10, memory: 10, storage: 40}
"""


def tdauto(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tdauto.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TDAUTO_")}
    return {**clean, "TDAUTO_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}


def test_up_runs_tasks_and_stops_cleanly(env: dict[str, str], tmp_path: Path) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 90
        while not any(line.startswith("ready in") for line in lines):
            assert time.monotonic() < deadline and up.poll() is None, "".join(lines)
            lines.append(up.stdout.readline())
        assert any("data dir:" in line for line in lines)
        children = psutil.Process(up.pid).children(recursive=True)
        assert len([c for c in children if "worker" in " ".join(c.cmdline())]) >= 3

        # Given a task file, When it is created through the CLI
        spec = tmp_path / "task.yaml"
        spec.write_text(TASK_YAML)
        created = json.loads(tdauto(env, "task", "create", "-f", str(spec), "--json").stdout)
        assert created[0]["name"] == "Nightly cleanup"
        listed = json.loads(tdauto(env, "task", "list", "--json").stdout)
        assert [t["name"] for t in listed] == ["Nightly cleanup"]
        shown = tdauto(env, "task", "show", "Nightly cleanup").stdout
        assert "CET" in shown or "CEST" in shown  # next fire times in the task's zone too

        # When it is run and waited for, Then both actions ran on this host
        ran = json.loads(tdauto(env, "task", "run", "Nightly cleanup", "--wait", "--json").stdout)
        assert ran["status"] == "SUCCEEDED"
        assert [a["status"] for a in ran["actions"]] == ["SUCCEEDED", "SUCCEEDED"]
        logs = tdauto(env, "exec", "logs", ran["id"]).stdout
        assert "backup" in logs and "cleanup" in logs
        execs = json.loads(tdauto(env, "exec", "list", "--json").stdout)
        assert [e["id"] for e in execs] == [ran["id"]]
        stats = json.loads(tdauto(env, "stats", "--json").stdout)
        assert stats["executions"]["by_status"] == {"SUCCEEDED": 1}

        # The backup restores, through the CLI, into another data dir
        other = {**env, "TDAUTO_DATA_DIR": str(tmp_path / "other")}
        backup_path = ran["actions"][0]["output"]["path"]
        tdauto(other, "backup", "restore", backup_path, "--yes")
        restored = json.loads(tdauto(other, "task", "list", "--json").stdout)
        assert [t["id"] for t in restored] == [created[0]["id"]]
        # but not over the store this `up` is running on
        live = tdauto(env, "backup", "restore", backup_path, "--yes", check=False)
        assert live.returncode == 2
        assert f"in use by tdauto (pid {up.pid})" in live.stderr and "--force" in live.stderr

        # Pause, resume and delete go through too
        paused = json.loads(tdauto(env, "task", "pause", "Nightly cleanup", "--json").stdout)
        assert paused["enabled"] is False and paused["next_run_at"] is None
        resumed = json.loads(tdauto(env, "task", "resume", "Nightly cleanup", "--json").stdout)
        assert resumed["enabled"] is True and resumed["next_run_at"]
        bad = tdauto(env, "task", "run", "No such task", check=False)
        assert bad.returncode != 0 and "not found" in bad.stderr
        tdauto(env, "task", "delete", "Nightly cleanup")
        assert json.loads(tdauto(env, "task", "list", "--json").stdout) == []
    finally:
        # When Ctrl-C reaches `tdauto up`, Then it and every worker stop
        children = psutil.Process(up.pid).children(recursive=True)
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == []
    assert up.returncode == 0


def test_bad_task_file_is_refused_with_the_field(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(TASK_YAML.replace("hour: 3", "hour: 24"))
    proc = tdauto(env, "task", "create", "-f", str(spec), check=False)
    assert proc.returncode == 2
    assert "hour" in proc.stderr
    assert json.loads(tdauto(env, "task", "list", "--json").stdout) == []
