"""`tdauto beat` fires tasks from the store; a restart neither re-fires nor forgets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tdauto import AutomationSystems, ExecutionStatus, ProcessType, ScheduleType
from tests.integration.conftest import REPO, cli_env


def start_beat(redis_url: str, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "beat"],
        env=cli_env(redis_url, data_dir),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
    )


def wait_for(predicate, timeout_s: float, what: str, explain=None) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate`; on timeout, fail with `explain()` (what is still wrong) when given."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain else ""
            raise AssertionError(f"timed out waiting for {what}{detail}")
        time.sleep(0.2)


def test_beat_picks_up_new_task_and_survives_restart(
    system: AutomationSystems,
    workers: list[subprocess.Popen[bytes]],
    redis_url: str,
    data_dir: Path,
) -> None:
    log = data_dir / "beat.log"
    beat = start_beat(redis_url, data_dir, log)
    try:
        time.sleep(2)  # beat is up before the task exists
        # When a task is created while beat runs
        task = asyncio.run(
            system.create_task(
                name="Every two seconds",
                type=ProcessType.MAINTENANCE,
                schedule=ScheduleType.INTERVAL,
                schedule_config={"every": 2},
                actions=[{"type": "cleanup", "params": {"older_than": "30days", "dry_run": True}}],
            )
        )

        # Then beat fires it without a restart
        def runs() -> list:  # type: ignore[type-arg]
            return system.store.list_executions(task_id=task.id, limit=None)

        wait_for(lambda: len(runs()) >= 2, 30, "two scheduled runs")
        # When beat is killed and started again
        os.killpg(beat.pid, signal.SIGKILL)
        beat.wait()
        before = {e.scheduled_for for e in runs()}
        beat = start_beat(redis_url, data_dir, log)
        wait_for(lambda: len(runs()) >= len(before) + 2, 30, "runs after restart")
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=20)
    executions = runs()
    # Then no slot fired twice, every run was scheduled, and the runs succeeded. The new beat
    # leads only once the killed beat's leader lease has run out (TDAUTO_LEADER_TTL_S), so the
    # slots of that gap are one catch-up run plus MISSED records: none forgotten.
    slots = Counter(e.scheduled_for for e in executions)
    assert all(n == 1 for n in slots.values()), slots
    assert {e.trigger.value for e in executions} <= {"schedule", "catchup"}
    wait_for(lambda: all(e.status.terminal for e in runs()), 30, "all runs to finish")
    ran = {e.status for e in runs() if e.status is not ExecutionStatus.MISSED}
    assert ran == {ExecutionStatus.SUCCEEDED}
    stored = system.store.get_task(task.id)
    assert stored is not None and stored.next_run_at is not None and stored.last_run_at is not None
