"""When a task fires next: :func:`next_fire_ts` and :func:`preview`.

A fire time is a nominal slot (see :mod:`tdauto.schedules.slots`) plus the task's
deterministic offsets (see :mod:`tdauto.schedules.offsets`). The functions take the time as
an argument and never read the clock (``preview`` reads it once, and only when given no
time), so the scheduler, the CLI and the tests all get the same answer for the same input.

Window: a slot fires when it is at or after ``start_date`` and its fire time is at or before
``end_date``, so no fire is ever before ``start_date`` or after ``end_date``; a slot whose
offsets would push it past ``end_date`` does not fire. Naive datetimes in the config are
wall-clock times in the schedule's zone, ``config.timezone`` or else ``default_tz``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tdauto.errors import InvalidInput
from tdauto.models import COMMON_SCHEDULE_KEYS, SCHEDULE_KEYS, ScheduleConfig, ScheduleType
from tdauto.schedules import offsets
from tdauto.schedules.slots import (
    cron_expression,
    cron_slots,
    interval_slots,
    missing_key,
    wall_ts,
)


def schedule_zone(config: ScheduleConfig, default_tz: str = "UTC") -> ZoneInfo:
    """The zone a schedule's wall-clock times are in: its own, else ``default_tz``."""
    name = config.timezone or default_tz
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        field = "schedule_config.timezone" if config.timezone else "default_tz"
        raise InvalidInput(
            field, f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'"
        ) from exc


def check_schedule_config(
    schedule: ScheduleType | str, config: ScheduleConfig | Mapping[str, Any]
) -> ScheduleConfig:
    """``config`` validated as a Task validates its ``schedule_config``: every key known,
    every key applicable to ``schedule``, every required key set.

    Unknown or inapplicable keys are errors rather than ignored, because a key that is
    silently dropped (``hour`` on an HOURLY schedule) is a schedule that is not what its
    author believes. The rule is the one ``models.Task`` applies, with the same message.
    """
    schedule = ScheduleType(schedule)
    allowed, required = SCHEDULE_KEYS[schedule]
    if not isinstance(config, ScheduleConfig):
        unknown = set(config) - set(ScheduleConfig.model_fields)
        if unknown:
            raise InvalidInput(
                "schedule_config",
                f"unknown key(s) {sorted(unknown)}; "
                f"allowed for {schedule.name}: {sorted(allowed | COMMON_SCHEDULE_KEYS)}",
            )
        config = ScheduleConfig.model_validate(dict(config))
    given = config.given_keys()
    extra = given - allowed - COMMON_SCHEDULE_KEYS
    if extra:
        raise InvalidInput(
            "schedule_config",
            f"key(s) {sorted(extra)} do not apply to {schedule.name} schedules; "
            f"allowed: {sorted(allowed | COMMON_SCHEDULE_KEYS)}",
        )
    missing = required - given
    if missing:
        raise missing_key(schedule, sorted(missing)[0])
    return config


def _nominal_slots(
    schedule: ScheduleType,
    config: ScheduleConfig,
    zone: ZoneInfo,
    lower_ts: float,
    *,
    after_ts: float,
    anchor_ts: float | None,
) -> Iterator[float]:
    """The schedule's nominal slots strictly after ``lower_ts`` and at or after
    ``start_date``, ascending."""
    start_ts = wall_ts(config.start_date, zone) if config.start_date is not None else None
    if start_ts is not None:
        # slot > nextafter(start, -inf) is exactly slot >= start.
        lower_ts = max(lower_ts, math.nextafter(start_ts, -math.inf))
    if schedule is ScheduleType.ONCE:
        if config.at is None:
            raise missing_key(schedule, "at")
        at_ts = wall_ts(config.at, zone)
        return iter([at_ts] if at_ts > lower_ts else [])
    if schedule is ScheduleType.INTERVAL:
        if config.every is None:
            raise missing_key(schedule, "every")
        # start_date is a stated first run, so it is a slot itself; the creation time is not
        # (no first-run surprise: a new task fires one interval after it was created).
        if start_ts is not None:
            return interval_slots(start_ts, config.every, lower_ts, first_index=0)
        anchor = anchor_ts if anchor_ts is not None else after_ts
        return interval_slots(anchor, config.every, lower_ts, first_index=1)
    return cron_slots(cron_expression(schedule, config), zone, lower_ts)


def next_fire_ts(
    schedule: ScheduleType,
    config: ScheduleConfig,
    after_ts: float,
    *,
    default_tz: str = "UTC",
    anchor_ts: float | None = None,
    task_id: str = "",
) -> float | None:
    """The first fire time (UTC epoch seconds) strictly after ``after_ts``, or None when the
    schedule has none left (a ONCE already past, the end of ``end_date``).

    ``task_id`` selects the task's spread and jitter offsets; ``""`` means none (the nominal
    slot, as :func:`preview` shows). ``anchor_ts`` anchors an INTERVAL grid that has no
    ``start_date``: pass the task's creation time, so every call lays the same grid; without
    it the grid starts at ``after_ts``, which only a one-off question should rely on.

    The answer is the smallest fire time above ``after_ts`` over all slots, so calling again
    with the answer as ``after_ts`` walks every fire exactly once, in order, even when a
    jitter larger than the slot spacing makes a later slot fire before an earlier one.
    """
    schedule = ScheduleType(schedule)
    config = check_schedule_config(schedule, config)
    zone = schedule_zone(config, default_tz)
    end_ts = wall_ts(config.end_date, zone) if config.end_date is not None else None
    # A slot at or before after_ts - max_offset fires at or before after_ts: start there.
    lower_ts = after_ts - offsets.max_offset_s(task_id, config.spread, config.jitter)
    slots = _nominal_slots(schedule, config, zone, lower_ts, after_ts=after_ts, anchor_ts=anchor_ts)
    best_ts: float | None = None
    for slot_ts in slots:
        if end_ts is not None and slot_ts > end_ts:
            break
        if best_ts is not None and slot_ts >= best_ts:
            break  # offsets are >= 0: no later slot can fire earlier than best_ts
        fire = offsets.fire_ts(task_id, slot_ts, config.spread, config.jitter)
        if fire <= after_ts or (end_ts is not None and fire > end_ts):
            continue
        if best_ts is None or fire < best_ts:
            best_ts = fire
        if best_ts <= slot_ts:
            break  # no offset (fire == slot): every later slot fires after it
    return best_ts


def _as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken as UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def preview(
    schedule: ScheduleType,
    config: ScheduleConfig | dict[str, Any],
    count: int = 5,
    after: datetime | None = None,
    *,
    default_tz: str = "UTC",
    now: datetime | None = None,
) -> list[datetime]:
    """The next ``count`` nominal fire times after ``after`` (default ``now``, default the
    clock) as aware UTC datetimes, ascending: what a user checks before creating a task.

    Task offsets are left out (no task exists yet). ``config`` may be a plain dict, which is
    validated as a Task would validate it. A naive ``after`` or ``now`` is UTC. Fewer than
    ``count`` come back when the schedule ends first (a ONCE, an ``end_date``).
    """
    if count < 0:
        raise InvalidInput("count", f"must be 0 or more, got {count}")
    schedule = ScheduleType(schedule)
    checked = check_schedule_config(schedule, config)
    if after is None:
        after = now if now is not None else datetime.now(UTC)
    after_ts = _as_utc(after).timestamp()
    fires: list[datetime] = []
    cursor_ts = after_ts
    while len(fires) < count:
        fire = next_fire_ts(schedule, checked, cursor_ts, default_tz=default_tz, anchor_ts=after_ts)
        if fire is None:
            break
        fires.append(datetime.fromtimestamp(fire, UTC))
        cursor_ts = fire
    return fires
