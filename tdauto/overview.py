"""What a person reads about one task: its record plus the schedule in words, the next fire
times in UTC and in the task's zone, and its last runs (``tdauto task show``, later the HTTP
API). Computation only, from the task and the runs the caller read; no clock unless given
none, no Celery (``tdauto.schedules``), no store."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tdauto.models import Execution, Task
from tdauto.schedules import describe, next_fire_ts, schedule_zone


def upcoming_fires(
    task: Task, count: int, default_tz: str = "UTC", after_ts: float | None = None
) -> list[datetime]:
    """The task's next ``count`` fire times (aware, UTC) with its anchor, spread and jitter,
    as the scheduler places them; none for a paused task (the scheduler fires none)."""
    fires: list[datetime] = []
    after = time.time() if after_ts is None else after_ts
    while task.enabled and len(fires) < count:
        nxt = next_fire_ts(
            task.schedule,
            task.schedule_config,
            after,
            default_tz=default_tz,
            anchor_ts=task.created_at.timestamp(),
            task_id=task.id,
        )
        if nxt is None:
            break
        fires.append(datetime.fromtimestamp(nxt, UTC))
        after = nxt
    return fires


def run_summary(execution: Execution) -> dict[str, Any]:
    """One line's worth of a run: id, status, trigger, times, duration and error."""
    return {
        "id": execution.id,
        "status": execution.status.value,
        "trigger": execution.trigger.value,
        "created_at": execution.created_at.isoformat(),
        "finished_at": execution.finished_at.isoformat() if execution.finished_at else None,
        "duration_s": execution.duration_s,
        "error": execution.error,
    }


def task_overview(
    task: Task,
    runs: Iterable[Execution],
    count: int = 5,
    default_tz: str = "UTC",
    after_ts: float | None = None,
) -> dict[str, Any]:
    """The task's record (JSON-ready) with ``schedule_text``, ``zone``, ``upcoming`` (UTC),
    ``upcoming_local`` (the task's zone) and ``last_runs``: what ``task show`` prints, as
    text or as ``-o json|yaml``."""
    zone = schedule_zone(task.schedule_config, default_tz)
    fires = upcoming_fires(task, count, default_tz, after_ts)
    return {
        **task.model_dump(mode="json"),
        "schedule_text": describe(task.schedule, task.schedule_config, default_tz=default_tz),
        "zone": zone.key,
        "upcoming": [f.isoformat() for f in fires],
        "upcoming_local": [f.astimezone(zone).isoformat() for f in fires],
        "last_runs": [run_summary(e) for e in runs],
    }
