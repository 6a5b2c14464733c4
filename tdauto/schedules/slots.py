"""Nominal slots: the instants a schedule is due, before any spread or jitter is added.

Two generators cover the seven schedule types. :func:`interval_slots` lays a fixed grid of
``every_s`` seconds from an anchor; it lives in absolute time, so DST does not touch it.
:func:`cron_slots` yields the matches of a 5-field cron expression on the wall clock of a
zone; the time-of-day types (HOURLY, DAILY, WEEKLY, MONTHLY) are turned into cron
expressions by :func:`cron_expression`, so one well-tested engine (croniter) does all
calendar arithmetic and they share its semantics (Vixie cron's, day-of-month OR
day-of-week when both are restricted).

All instants are UTC epoch seconds (``*_ts``); the functions never read the clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from tdauto.errors import InvalidInput
from tdauto.models import ScheduleConfig, ScheduleType

# Cron's day numbering, which ScheduleConfig.day_of_week names: 0 is Sunday.
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def missing_key(schedule: ScheduleType, key: str) -> InvalidInput:
    """The error for a required ``schedule_config`` key that is not set."""
    return InvalidInput(f"schedule_config.{key}", f"{schedule.name} schedules need {key!r}; set it")


def cron_expression(schedule: ScheduleType, config: ScheduleConfig) -> str:
    """The 5-field cron expression of a time-of-day schedule (or a CRON schedule's own).

    ``minute`` (and ``hour`` where the type has one) default to 0. MONTHLY ``day`` 31
    becomes ``31``, which cron matches only in months that have a 31st: months too short
    for the day are skipped, as cron does, rather than moved to their last day;
    ``day: "last"`` (cron's ``L``) is the way to say "the last day of every month".
    """
    minute = config.minute if config.minute is not None else 0
    hour = config.hour if config.hour is not None else 0
    if schedule is ScheduleType.HOURLY:
        return f"{minute} * * * *"
    if schedule is ScheduleType.DAILY:
        if config.hour is None:
            raise missing_key(schedule, "hour")
        return f"{minute} {hour} * * *"
    if schedule is ScheduleType.WEEKLY:
        if config.day_of_week is None:
            raise missing_key(schedule, "day_of_week")
        return f"{minute} {hour} * * {DAY_NAMES.index(config.day_of_week)}"
    if schedule is ScheduleType.MONTHLY:
        if config.day is None:
            raise missing_key(schedule, "day")
        return f"{minute} {hour} {'L' if config.day == 'last' else config.day} * *"
    if schedule is ScheduleType.CRON:
        if config.expression is None:
            raise missing_key(schedule, "expression")
        return config.expression
    raise ValueError(f"{schedule.name} schedules have no cron expression")


def cron_slots(expression: str, zone: ZoneInfo, after_ts: float) -> Iterator[float]:
    """The instants, strictly after ``after_ts`` and ascending, at which ``expression``
    matches the wall clock of ``zone``.

    This is the one place that maps wall-clock matches to instants, so it is where the DST
    rules belong. Today it iterates croniter over aware datetimes in ``zone``, and croniter
    does this across a transition (checked with Europe/Paris, croniter 7):

    - spring forward, a fixed-time slot inside the gap (02:30 on a day 02:00 jumps to 03:00)
      fires at the first valid instant after the gap (03:00), once, as Vixie cron does;
      wildcard-hour slots inside the gap (``*/15 * * * *`` at 02:15) do not exist and are not
      fired: the schedule follows real time, also as Vixie cron does;
    - fall back, wildcard-hour slots run in both occurrences of the repeated hour (right),
      but a fixed-time slot in it (02:30 when 03:00 falls back to 02:00) also runs twice,
      where Vixie cron runs it once, at the first occurrence. That fix goes here.

    The result does not depend on where the iteration starts (the same instants come out
    from any ``after_ts``), which the scheduler's recompute-the-same-fire-time rule needs.
    An expression that can never match again (``0 0 30 2 *``) just ends the iteration.
    """
    # croniter works in whole seconds: start on the whole second at or before after_ts and
    # drop what is not strictly after it, so a fractional after_ts cannot skip a slot.
    start = datetime.fromtimestamp(math.floor(after_ts), zone)
    iterator = croniter(expression, start)
    last_ts = after_ts
    while True:
        try:
            slot = iterator.get_next(datetime)
        except CroniterBadDateError:
            return
        slot_ts = slot.timestamp()
        if slot_ts > last_ts:  # ascending, strictly, whatever a transition does
            last_ts = slot_ts
            yield slot_ts


def interval_slots(
    anchor_ts: float, every_s: float, after_ts: float, *, first_index: int
) -> Iterator[float]:
    """The grid ``anchor_ts + k * every_s`` for ``k >= first_index``, strictly after
    ``after_ts``, ascending.

    Each slot is computed from the anchor, not by adding ``every_s`` to the previous one, so
    float error does not drift and any process recomputes bit-identical slots.
    """
    if every_s <= 0:
        raise InvalidInput("schedule_config.every", "must be a positive number of seconds")
    index = max(first_index, math.floor((after_ts - anchor_ts) / every_s) + 1)
    # The floor division can be off by one either way once floats round; settle it exactly.
    while index > first_index and anchor_ts + (index - 1) * every_s > after_ts:
        index -= 1
    while anchor_ts + index * every_s <= after_ts:
        index += 1
    while True:
        yield anchor_ts + index * every_s
        index += 1


def wall_ts(value: datetime, zone: ZoneInfo) -> float:
    """``value`` as UTC epoch seconds; a naive datetime is a wall-clock time in ``zone``.

    A naive time that a DST transition skips or repeats resolves as ``zoneinfo`` does with
    ``fold=0``: a repeated time is its first occurrence; a skipped time takes the offset in
    force before the gap (02:30 in a 02:00->03:00 gap is 03:30 after it).
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.timestamp()
