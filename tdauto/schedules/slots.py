"""Nominal slots: the instants a schedule is due, before any spread or jitter is added.

Two generators cover the seven schedule types. :func:`interval_slots` lays a fixed grid of
``every_s`` seconds from an anchor; it lives in absolute time, so DST does not touch it.
:func:`cron_slots` yields the matches of a 5-field cron expression on the wall clock of a
zone; the time-of-day types (HOURLY, DAILY, WEEKLY, MONTHLY) are turned into cron
expressions by :func:`cron_expression`, so one well-tested engine (croniter) does all
calendar arithmetic and they share its semantics (Vixie cron's, day-of-month OR
day-of-week when both are restricted), and one set of DST rules, Vixie cron's too (see
:func:`cron_slots`).

All instants are UTC epoch seconds (``*_ts``); the functions never read the clock.
"""

from __future__ import annotations

import copy
import functools
import heapq
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from tdauto.errors import InvalidInput
from tdauto.models import ScheduleConfig, ScheduleType

# Cron's day numbering, which ScheduleConfig.day_of_week names: 0 is Sunday.
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

_DAY_S = 86400


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


def is_wildcard_time(expression: str) -> bool:
    """Whether ``expression`` follows real time across DST rather than being fixed-time.

    Vixie cron's rule, to the letter: a job is "wildcard" when its minute field or its hour
    field starts with ``*`` (``*``, ``*/15``, ``*/2``, ``*,5``), and "fixed-time" otherwise.
    It is a rule on the text, not on the values: ``0 */1 * * *`` is wildcard while
    ``0 0-23 * * *``, which matches the same minutes, is fixed-time, as in cron. HOURLY
    (``M * * * *``) is wildcard; DAILY, WEEKLY and MONTHLY are always fixed-time.
    """
    minute, hour = expression.split()[:2]
    return minute.startswith("*") or hour.startswith("*")


def cron_slots(expression: str, zone: ZoneInfo, after_ts: float) -> Iterator[float]:
    """The instants, strictly after ``after_ts`` and ascending, at which ``expression`` is
    due on the wall clock of ``zone``, by Vixie cron's DST rules.

    This is the one place that maps wall-clock matches to instants, so the DST rules live
    here. croniter enumerates the matching wall-clock times on a naive (zone-less) clock,
    where every day has 24 hours; each match is then placed in real time:

    - a **fixed-time** job (see :func:`is_wildcard_time`) runs at the first instant the
      zone's clock shows the match or a later time: a time the clock shows twice (fall back)
      runs once, at its first occurrence; a time that a spring-forward gap skips runs once,
      at the first valid instant after the gap (Berlin 02:30 on 2026-03-29 runs at 03:00
      CEST, 01:00Z). Every match in one gap lands on that same instant and is one slot,
      one fire (``0,30 2 * * *`` fires once at the jump, not twice): a slot is identified
      by its fire time, so two runs at one instant could not be told apart anyway;
    - a **wildcard** job follows real time: it is due at every instant whose wall clock
      matches, so in a repeated hour it runs in both occurrences, and in a gap it does not
      run at all (the skipped wall times never happen).

    The result does not depend on where the iteration starts (the same instants come out
    from any ``after_ts``), which the scheduler's recompute-the-same-fire-time rule needs.
    An expression that can never match again (``0 0 30 2 *``) just ends the iteration.
    """
    if is_wildcard_time(expression):
        return _real_time_slots(expression, zone, after_ts)
    return _fixed_time_slots(expression, zone, after_ts)


def _wall(instant_ts: float, zone: ZoneInfo) -> datetime:
    """The naive wall-clock time of ``zone`` at ``instant_ts``, to the whole second."""
    return datetime.fromtimestamp(math.floor(instant_ts), zone).replace(tzinfo=None, fold=0)


def _wall_matches(expression: str, start: datetime) -> Iterator[datetime]:
    """The naive wall-clock times strictly after ``start`` that ``expression`` matches,
    ascending, on a clock without DST.

    The expressions the time-of-day types make (``M * * * *``, ``M H * * *``,
    ``M H * * D``) are stepped by plain naive-datetime arithmetic (:func:`_simple_steps`),
    about a hundred times cheaper than croniter, which every other expression goes through
    (a parsed copy per expression, see :func:`_cron_template`). Both answer the same
    question on the same DST-free clock; a property test holds them equal.
    """
    simple = _simple_steps(expression)
    if simple is not None:
        return _stepped_matches(start, *simple)
    return _croniter_matches(expression, start)


@functools.lru_cache(maxsize=4096)
def _simple_steps(expression: str) -> tuple[int, int | None, int | None] | None:
    """``(minute, hour, weekday)`` of an expression that fixes a minute and at most an hour
    and a weekday (plain numbers, every other field ``*``), else None. ``hour`` and
    ``weekday`` are None when their field is ``*``; the weekday is cron's (0 = Sunday)."""
    fields = expression.split()
    if len(fields) != 5 or fields[2] != "*" or fields[3] != "*":
        return None
    minute, hour, weekday = fields[0], fields[1], fields[4]
    if not (minute.isdigit() and int(minute) <= 59):
        return None
    if hour != "*" and not (hour.isdigit() and int(hour) <= 23):
        return None
    if weekday != "*" and not (weekday.isdigit() and int(weekday) <= 7):
        return None
    if hour == "*" and weekday != "*":
        return None  # hourly on one weekday: rare, croniter does it
    return (
        int(minute),
        None if hour == "*" else int(hour),
        None if weekday == "*" else int(weekday) % 7,
    )


def _stepped_matches(
    start: datetime, minute: int, hour: int | None, weekday: int | None
) -> Iterator[datetime]:
    """Matches of ``minute [hour] * * [weekday]`` strictly after the naive ``start``."""
    if hour is None:  # minute M of every hour
        match = start.replace(minute=minute, second=0, microsecond=0)
        step = timedelta(hours=1)
    else:
        match = start.replace(hour=hour, minute=minute, second=0, microsecond=0)
        step = timedelta(days=1 if weekday is None else 7)
        if weekday is not None:  # Python's Monday=0 -> cron's Sunday=0
            match += timedelta(days=(weekday - (match.weekday() + 1) % 7) % 7)
    if match <= start:
        match += step
    while True:
        yield match
        match += step


@functools.lru_cache(maxsize=1024)
def _cron_template(expression: str) -> croniter:
    """A croniter parsed once per expression; callers iterate a copy of it."""
    return croniter(expression, datetime(2000, 1, 1))


def _croniter_matches(expression: str, start: datetime) -> Iterator[datetime]:
    iterator = copy.copy(_cron_template(expression))
    iterator.set_current(start, force=True)
    while True:
        try:
            yield iterator.get_next(datetime)
        except CroniterBadDateError:
            return


def _first_instant(local: datetime, zone: ZoneInfo) -> float:
    """The first instant at which the clock of ``zone`` shows ``local`` or a later time.

    That is ``local`` itself when the clock shows it once, its first occurrence (``fold=0``)
    when the clock shows it twice, and the end of the gap when a transition skips it.
    The map never decreases as ``local`` increases, so ascending matches give ascending
    instants (equal ones inside one gap).
    """
    first = local.replace(tzinfo=zone)
    second = local.replace(tzinfo=zone, fold=1)
    first_ts, second_ts = first.timestamp(), second.timestamp()
    if first_ts <= second_ts:  # shown once (equal) or twice (fold=0 is the earlier)
        return first_ts
    # Skipped: fold=0 reads it with the offset before the gap, fold=1 with the offset after,
    # which brackets the transition: second_ts < transition <= first_ts.
    return _transition_ts(local, zone, second_ts, first_ts)


def _transition_ts(local: datetime, zone: ZoneInfo, low_ts: float, high_ts: float) -> float:
    """The first whole second in ``(low_ts, high_ts]`` at which the clock shows ``local``
    or later: the instant a spring-forward gap around ``local`` ends (bisection, a few
    dozen conversions at most, and only for a time inside a gap)."""
    low, high = math.floor(low_ts), math.ceil(high_ts)
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(middle, zone) >= local:
            high = middle
        else:
            low = middle
    return float(high)


def _fixed_time_slots(expression: str, zone: ZoneInfo, after_ts: float) -> Iterator[float]:
    """Fixed-time slots: each match at :func:`_first_instant`, repeats merged."""
    # A match at or before the wall clock at after_ts was shown by after_ts, so its first
    # instant is not after it: the matches that can fire start after wall(after_ts).
    last_ts = after_ts
    for local in _wall_matches(expression, _wall(after_ts, zone)):
        slot_ts = _first_instant(local, zone)
        if slot_ts > last_ts:  # strictly ascending: one slot for all matches in one gap
            last_ts = slot_ts
            yield slot_ts


def _real_time_slots(expression: str, zone: ZoneInfo, after_ts: float) -> Iterator[float]:
    """Wildcard slots: every instant whose wall clock matches, in time order.

    A match shown twice has two instants an offset change apart, and matches after it can
    come between them, so a heap holds instants until they are due. Once a match shown at
    least once is read, every instant still to come is after its first instant (the map
    of :func:`_first_instant` never decreases, and no other wall time is shown then), so
    the heap gives up everything up to that first instant: an ordinary match is yielded
    as soon as it is read, without looking ahead.
    """
    # Matches from the lowest wall time still ahead: after a fall back within the next day
    # the clock shows earlier times than now (offsets change at most once a day).
    start = min(_wall(after_ts, zone), _wall(after_ts + _DAY_S, zone) - timedelta(days=1))
    pending: list[float] = []
    for local in _wall_matches(expression, start):
        first_ts = local.replace(tzinfo=zone).timestamp()
        second_ts = local.replace(tzinfo=zone, fold=1).timestamp()
        if first_ts > second_ts:
            continue  # skipped by a gap: this wall time never happens
        for instant_ts in (first_ts, second_ts) if first_ts < second_ts else (first_ts,):
            if instant_ts > after_ts:
                heapq.heappush(pending, instant_ts)
        while pending and pending[0] <= first_ts:
            yield heapq.heappop(pending)
    while pending:
        yield heapq.heappop(pending)


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
