"""Overlap policies with real beat and workers: runs that outlast their interval."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from tdauto import AutomationSystems, Execution, ExecutionStatus, ProcessType, ScheduleType
from tests.integration.test_beat import start_beat, wait_for

S = ExecutionStatus


def overlapping(runs: list[Execution]) -> bool:
    spans = sorted(
        (r.started_at, r.finished_at) for r in runs if r.started_at and r.finished_at
    )
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_each_overlap_policy_with_runs_longer_than_their_interval(
    system: AutomationSystems,
    workers: list[subprocess.Popen[bytes]],
    redis_url: str,
    data_dir: Path,
) -> None:
    options = {
        "skip": {},
        "queue": {"overlap": "queue"},
        "allow": {"overlap": "allow", "max_concurrent": 3},
        "replace": {"overlap": "replace"},
    }
    tasks = {
        policy: asyncio.run(
            system.create_task(
                name=f"slow-{policy}",
                type=ProcessType.MAINTENANCE,
                schedule=ScheduleType.INTERVAL,
                schedule_config={"every": 2},
                actions=[
                    {"type": "sleep", "params": {"seconds": 5}, "resource_class": "storage"}
                ],
                **opts,
            )
        )
        for policy, opts in options.items()
    }
    beat = start_beat(redis_url, data_dir, data_dir / "beat.log")
    try:
        time.sleep(13)
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=20)
    for task in tasks.values():
        asyncio.run(system.pause_task(task.id))

    def runs(policy: str) -> list[Execution]:
        return system.store.list_executions(task_id=tasks[policy].id, limit=None)

    wait_for(
        lambda: all(e.status.terminal for p in tasks for e in runs(p)), 60, "runs to end"
    )
    by = {p: Counter(e.status for e in runs(p)) for p in tasks}
    for policy in tasks:
        slots = Counter(e.scheduled_for for e in runs(policy))
        assert max(slots.values()) == 1, f"{policy}: a slot ran twice"

    skip = runs("skip")
    assert by["skip"][S.SKIPPED] >= 2 and by["skip"][S.SUCCEEDED] >= 1, by["skip"]
    assert not overlapping([e for e in skip if e.status is S.SUCCEEDED])
    assert all("still active" in (e.error or "") for e in skip if e.status is S.SKIPPED)

    queue = [e for e in runs("queue") if e.status is S.SUCCEEDED]
    assert len(queue) >= 2 and not overlapping(queue), by["queue"]
    assert by["queue"][S.SKIPPED] >= 1

    allow = [e for e in runs("allow") if e.status is S.SUCCEEDED]
    assert len(allow) >= 3 and overlapping(allow), by["allow"]

    replaced = [e for e in runs("replace") if e.status is S.CANCELLED]
    assert replaced and all("replaced by" in (e.error or "") for e in replaced), by["replace"]
