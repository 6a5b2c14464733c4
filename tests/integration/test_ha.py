"""Two `tdauto beat` processes: one leads, the other stands by; kill the leader and the standby
takes over within the design's bound, and no slot ever fires twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import redis

from tdauto import AutomationSystems, ExecutionStatus, ProcessType, ScheduleType
from tdauto.models import Execution
from tdauto.store.keys import Keys
from tests.integration.test_beat import start_beat, wait_for

FAILOVER_BOUND_S = 30.0
"""The design's bound with default settings (TTL 15 s + one tick, with room to spare)."""

LEADS = "leader: yes"
STANDS_BY = "leader: no"


def text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def before_lead(log: Path) -> str:
    """The part of a beat's log written while it had not yet led."""
    body = text(log)
    index = body.find(LEADS)
    return body if index < 0 else body[:index]


def test_standby_beat_takes_over_when_the_leader_is_killed(
    system: AutomationSystems,
    workers: list[subprocess.Popen[bytes]],
    redis_url: str,
    data_dir: Path,
) -> None:
    logs = [data_dir / "beat-0.log", data_dir / "beat-1.log"]
    beats = [start_beat(redis_url, data_dir, log) for log in logs]
    try:
        # Given two beats, one of which leads
        wait_for(
            lambda: all(LEADS in text(g) or STANDS_BY in text(g) for g in logs),
            60,
            "both beats to join the election",
        )
        leaders = [i for i, g in enumerate(logs) if LEADS in text(g)]
        assert len(leaders) == 1, [text(g)[-2000:] for g in logs]
        old, new = leaders[0], 1 - leaders[0]
        print(f"\nbeat {old} leads (pid {beats[old].pid}); beat {new} stands by")

        # And a task firing every two seconds
        task = asyncio.run(
            system.create_task(
                name="HA every two seconds",
                type=ProcessType.MAINTENANCE,
                schedule=ScheduleType.INTERVAL,
                schedule_config={"every": 2},
                actions=[{"type": "cleanup", "params": {"older_than": "30days", "dry_run": True}}],
            )
        )

        def runs() -> list[Execution]:
            return system.store.list_executions(task_id=task.id, limit=None)

        wait_for(lambda: len(runs()) >= 3, 60, "three runs fired by the leader")

        # When the leader's whole process group is SIGKILLed (no release, no cleanup)
        killed_at = time.time()
        os.killpg(beats[old].pid, signal.SIGKILL)
        beats[old].wait()

        # Then the standby leads and fires again within the bound
        def fired_since_kill() -> list[Execution]:
            """Runs sent after the kill (MISSED records of the gap are not runs)."""
            return [
                e
                for e in runs()
                if e.created_at.timestamp() > killed_at and e.status is not ExecutionStatus.MISSED
            ]

        wait_for(lambda: LEADS in text(logs[new]), 90, "the standby to take over")
        wait_for(lambda: bool(fired_since_kill()), 90, "a fire by the new leader")
        failover_s = min(e.created_at.timestamp() for e in fired_since_kill()) - killed_at
        print(f"failover: {failover_s:.1f} s from SIGKILL to the new leader's first fire")
        assert failover_s <= FAILOVER_BOUND_S, failover_s
        # And it keeps firing on schedule
        wait_for(lambda: len(fired_since_kill()) >= 3, 60, "more runs by the new leader")
        # And while it stood by it sent nothing: no store task, no static system job
        idle = before_lead(logs[new])
        assert "fired " not in idle and "Sending due task" not in idle, idle[-2000:]
    finally:
        for proc in beats:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)

    # Then no slot ran twice over the whole test, and nothing failed
    executions = runs()
    slots = Counter(e.scheduled_for for e in executions)
    assert all(n == 1 for n in slots.values()), slots
    wait_for(lambda: all(e.status.terminal for e in runs()), 60, "all runs to finish")
    statuses = {e.status for e in runs()}
    assert ExecutionStatus.SUCCEEDED in statuses
    allowed = {ExecutionStatus.SUCCEEDED, ExecutionStatus.MISSED, ExecutionStatus.SKIPPED}
    assert statuses <= allowed, statuses
    # And the surviving leader released the lock when it was stopped
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.get(Keys().beat_leader) is None
    finally:
        client.close()
