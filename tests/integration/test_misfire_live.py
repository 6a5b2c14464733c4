"""A beat stopped across several slots, then started again: each misfire policy, live."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from tdauto import AutomationSystems, ExecutionStatus, ProcessType, ScheduleType, Trigger
from tests.integration.test_beat import start_beat, wait_for

S = ExecutionStatus


def test_misfire_policies_after_beat_downtime(
    system: AutomationSystems,
    workers: list[subprocess.Popen[bytes]],
    redis_url: str,
    data_dir: Path,
) -> None:
    policies = {
        "run_once": {},
        "skip": {"misfire": "skip"},
        "run_all": {"misfire": "run_all", "max_catchup": 2, "overlap": "queue"},
    }
    tasks = {
        name: asyncio.run(
            system.create_task(
                name=f"every-3s-{name}",
                type=ProcessType.MAINTENANCE,
                schedule=ScheduleType.INTERVAL,
                schedule_config={"every": 3},
                actions=[{"type": "cleanup", "params": {"older_than": "30d", "dry_run": True}}],
                misfire_grace=2,
                **opts,
            )
        )
        for name, opts in policies.items()
    }

    def runs(name: str) -> list:  # type: ignore[type-arg]
        return system.store.list_executions(task_id=tasks[name].id, limit=None)

    log = data_dir / "beat.log"
    beat = start_beat(redis_url, data_dir, log)
    try:
        wait_for(lambda: all(runs(n) for n in tasks), 60, "a first run of every task")
        os.killpg(beat.pid, signal.SIGKILL)  # the beat dies across several slots
        beat.wait()
        stopped = time.time()
        time.sleep(10)
        beat = start_beat(redis_url, data_dir, log)
        wait_for(
            lambda: all(
                any(
                    (e.trigger is Trigger.CATCHUP or e.status is S.MISSED)
                    and e.scheduled_for is not None
                    and e.scheduled_for.timestamp() > stopped
                    for e in runs(n)
                )
                for n in tasks
            ),
            60,
            "the restarted beat to handle the missed slots",
        )
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=20)
    for task in tasks.values():
        asyncio.run(system.pause_task(task.id))

    def open_runs() -> str:
        return "; ".join(
            f"{n} {e.id} {e.status.value} trigger={e.trigger.value} slot={e.scheduled_for} "
            f"actions={[(a.status.value, a.attempts, a.sent_at) for a in e.actions]} "
            f"error={e.error}"
            for n in tasks
            for e in runs(n)
            if not e.status.terminal
        )

    wait_for(lambda: not open_runs(), 60, "runs to end", explain=open_runs)

    for name in tasks:
        slots = Counter(e.scheduled_for for e in runs(name))
        assert max(slots.values()) == 1, f"{name}: a slot has two executions"
        missed_window = [
            e for e in runs(name) if e.scheduled_for and e.scheduled_for.timestamp() > stopped
        ]
        assert len(missed_window) >= 3, (name, len(missed_window))

    def after_stop(name: str, status: S) -> list:  # type: ignore[type-arg]
        return [
            e
            for e in runs(name)
            if e.status is status and e.scheduled_for and e.scheduled_for.timestamp() > stopped
        ]

    catchups = [e for e in after_stop("run_once", S.SUCCEEDED) if e.trigger is Trigger.CATCHUP]
    assert len(catchups) == 1 and catchups[0].status is S.SUCCEEDED
    assert after_stop("run_once", S.MISSED)
    assert all("coalesced" in (e.error or "") for e in after_stop("run_once", S.MISSED))

    assert not [e for e in after_stop("skip", S.SUCCEEDED) if e.trigger is Trigger.CATCHUP]
    assert len(after_stop("skip", S.MISSED)) >= 3

    all_catchups = [
        e
        for e in runs("run_all")
        if e.trigger is Trigger.CATCHUP
        and e.scheduled_for
        and e.scheduled_for.timestamp() > stopped
    ]
    assert len(all_catchups) == 2 and {e.status for e in all_catchups} == {S.SUCCEEDED}
    assert all("max_catchup" in (e.error or "") for e in after_stop("run_all", S.MISSED))
