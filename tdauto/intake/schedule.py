"""Schedules that can never fire: refused when no date can match (``0 0 31 2 *``, an
``end_date`` before ``start_date``), a warning when the time is merely past (a past ``once``
is how a task that only runs after another, or by hand, is written: docs/execution.md)."""

from __future__ import annotations

from tdauto.errors import InvalidInput
from tdauto.models import ScheduleType, Task
from tdauto.schedules import next_fire_ts, schedule_zone
from tdauto.schedules.slots import wall_ts


def schedule_problems(
    task: Task, now_ts: float, default_tz: str, next_ts: float | None = None
) -> list[str]:
    """Raise for a schedule that no time can satisfy; return warnings for one that is past.
    ``next_ts``: the task's next fire time when the caller has it (none to check then)."""
    config = task.schedule_config
    zone = schedule_zone(config, default_tz)
    start, end = config.start_date, config.end_date
    end_ts = wall_ts(end, zone) if end is not None else None
    if start is not None and end is not None and wall_ts(end, zone) < wall_ts(start, zone):
        raise InvalidInput(
            "schedule_config.end_date",
            f"{end.isoformat()} is before start_date {start.isoformat()}, so the task "
            "could never fire; move end_date after start_date",
        )
    if next_ts is not None or _next(task, now_ts, default_tz) is not None:
        return []
    if task.schedule is ScheduleType.ONCE and config.at is not None:
        if task.run_after is not None:
            return []  # the documented way to say "only after its upstream"
        return [
            f"schedule_config.at: {config.at.isoformat()} is past, so the task never fires on "
            "its own; it runs only when triggered (tdauto task run)"
        ]
    if end is not None and end_ts is not None and end_ts <= now_ts:
        return [
            f"schedule_config.end_date: {end.isoformat()} is past, so the task never fires "
            "on its own; move end_date to a later time"
        ]
    field = "schedule_config.expression" if task.schedule is ScheduleType.CRON else "schedule"
    if end is not None:
        field = "schedule_config.end_date"
    raise InvalidInput(
        field,
        f"{config.expression or task.schedule.value!r} matches no date"
        + (" before end_date" if end is not None else "")
        + ", so the task would never fire; fix its days and months",
    )


def _next(task: Task, after_ts: float, default_tz: str) -> float | None:
    """The next fire time whether or not the task is paused (a paused task resumes)."""
    return next_fire_ts(
        task.schedule,
        task.schedule_config,
        after_ts,
        default_tz=default_tz,
        anchor_ts=task.created_at.timestamp(),
        task_id=task.id,
    )
