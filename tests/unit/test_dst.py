"""DST: time-of-day schedules across clock changes, checked against a brute-force oracle.

The rules (DESIGN.md section 5, Vixie cron's): a job is *wildcard* when its minute or hour
field starts with ``*`` (HOURLY, ``*/15 * * * *``, ``5 * * * *``) and *fixed-time*
otherwise (DAILY, WEEKLY, MONTHLY, ``30 2 * * *``).

- wildcard jobs follow real time: they fire at every instant whose wall clock matches, so
  twice in a repeated hour and not at all for wall times a gap skips;
- fixed-time jobs fire once per matching wall time: at its first occurrence when the clock
  shows it twice, and at the first valid instant after the gap when the clock skips it; all
  the matches one gap skips make one fire at that instant.

The oracle below is written from those sentences alone: it walks every UTC minute of a
window, reads the zone's wall clock, matches the cron fields on it, and remembers which
wall times it has already fired (fall back) and which it jumped over (spring forward). It
shares no code with :mod:`tdauto.schedules`; the windows are two days around every 2026
transition of zones chosen for their oddities (30-minute shifts, 45-minute offsets,
southern hemisphere, a change at midnight).
"""

from __future__ import annotations

import calendar
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tdauto.models import ScheduleConfig, ScheduleType
from tdauto.schedules import next_fire_ts
from tdauto.schedules.offsets import fire_ts
from tdauto.schedules.slots import is_wildcard_time

S = ScheduleType
MINUTE = timedelta(minutes=1)
DAY_S = 86400

ZONES = (
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute shift
    "America/Santiago",  # changes at 24:00, southern hemisphere
    "Pacific/Chatham",  # +12:45 / +13:45
    "Asia/Kolkata",  # +05:30, no DST
    "America/St_Johns",  # -03:30 / -02:30
    "UTC",
)


def ts(text: str) -> float:
    """An ISO time with its offset ("2026-03-29T01:00Z") as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def utc(value: float | None) -> str | None:
    """Epoch seconds as "YYYY-MM-DDTHH:MM[:SS]Z", for readable assertions."""
    if value is None:
        return None
    moment = datetime.fromtimestamp(value, UTC)
    pattern = "%Y-%m-%dT%H:%M:%SZ" if moment.second or moment.microsecond else "%Y-%m-%dT%H:%MZ"
    return moment.strftime(pattern)


def walk(schedule: ScheduleType, config: ScheduleConfig, start: float, stop: float) -> list[float]:
    """Every fire in ``(start, stop]``, found by asking next_fire_ts from the last one."""
    fires: list[float] = []
    cursor = start
    while True:
        got = next_fire_ts(schedule, config, cursor, task_id="walker")
        if got is None or got > stop:
            return fires
        assert got > cursor
        fires.append(got)
        cursor = got


# --- transitions, found by scanning the zone's offsets -----------------------------------------


def _offset_s(zone: ZoneInfo, instant: float) -> float:
    offset = datetime.fromtimestamp(instant, zone).utcoffset()
    assert offset is not None
    return offset.total_seconds()


@functools.cache
def transitions_2026(zone_name: str) -> tuple[float, ...]:
    """The instants in 2026 at which the zone's UTC offset changes, to the second."""
    zone = ZoneInfo(zone_name)
    found = []
    instant, end = ts("2026-01-01T00:00Z"), ts("2027-01-01T00:00Z")
    while instant < end:
        later = instant + 3600
        if _offset_s(zone, later) != _offset_s(zone, instant):
            low, high = int(instant), int(later)  # offset(low) is the old one, high the new
            while high - low > 1:
                middle = (low + high) // 2
                if _offset_s(zone, middle) == _offset_s(zone, low):
                    low = middle
                else:
                    high = middle
            found.append(float(high))
        instant = later
    return tuple(found)


# Zones without DST still get two windows, on the dates Europe changes.
_QUIET_DAYS = (ts("2026-03-29T01:00Z"), ts("2026-10-25T01:00Z"))
WINDOWS = [(zone, moment) for zone in ZONES for moment in transitions_2026(zone) or _QUIET_DAYS]


def test_the_windows_cover_each_zones_two_transitions() -> None:
    for zone in ZONES:
        expected = 0 if zone in ("UTC", "Asia/Kolkata") else 2
        assert len(transitions_2026(zone)) == expected, zone
    # spot checks: Berlin at 01:00Z both times, Lord Howe's half-hour, Santiago's midnight
    assert transitions_2026("Europe/Berlin") == (ts("2026-03-29T01:00Z"), ts("2026-10-25T01:00Z"))
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    spring = transitions_2026("Australia/Lord_Howe")[1]
    shift = _offset_s(lord_howe, spring) - _offset_s(lord_howe, spring - 1)
    assert shift == 1800
    santiago = ZoneInfo("America/Santiago")
    for moment in transitions_2026("America/Santiago"):
        assert datetime.fromtimestamp(moment - 1, santiago).strftime("%H:%M:%S") == "23:59:59"


# --- the oracle ----------------------------------------------------------------------------------


def _values(spec: str, low: int, high: int) -> set[int]:
    """The numbers a cron field matches: '*', numbers, 'a-b', steps '/n' and lists."""
    values: set[int] = set()
    for part in spec.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (int(x) for x in base.split("-"))
        else:
            first = last = int(base)
        values.update(range(first, last + 1, int(step) if step else 1))
    return values


@dataclass(frozen=True)
class Cron:
    """A cron expression as the oracle reads it."""

    expression: str

    @functools.cached_property
    def wildcard(self) -> bool:
        minute, hour = self.expression.split()[:2]
        return minute.startswith("*") or hour.startswith("*")

    @functools.cached_property
    def matches(self) -> Callable[[datetime], bool]:
        minute, hour, dom, month, dow = self.expression.split()
        minutes, hours = _values(minute, 0, 59), _values(hour, 0, 23)
        months = _values(month, 1, 12)
        days = set() if dom == "L" else _values(dom, 1, 31)
        weekdays = {d % 7 for d in _values(dow, 0, 7)}  # 0 and 7 are Sunday
        either = not dom.startswith("*") and not dow.startswith("*")

        def match(wall: datetime) -> bool:
            if wall.minute not in minutes or wall.hour not in hours or wall.month not in months:
                return False
            if dom == "L":
                day_ok = wall.day == calendar.monthrange(wall.year, wall.month)[1]
            else:
                day_ok = wall.day in days
            weekday_ok = (wall.weekday() + 1) % 7 in weekdays
            return (day_ok or weekday_ok) if either else (day_ok and weekday_ok)

        return match


@functools.cache
def _clock(zone_name: str, centre: float) -> tuple[tuple[float, datetime], ...]:
    """(instant, wall time) for every UTC minute from two days before ``centre`` to one day
    after it: a day to settle the oracle's memory, then the two-day window."""
    zone = ZoneInfo(zone_name)
    first = math.floor((centre - 2 * DAY_S) / 60) * 60
    return tuple(
        (float(minute), datetime.fromtimestamp(minute, zone).replace(tzinfo=None))
        for minute in range(first, int(centre + DAY_S) + 1, 60)
    )


def oracle(expression: str, zone_name: str, centre: float) -> list[float]:
    """The fires of ``expression`` in ``zone_name`` from one day before ``centre`` to one day
    after it, by walking the clock one minute at a time."""
    cron = Cron(expression)
    fires: list[float] = []
    fired: set[datetime] = set()  # fixed-time: wall times already run
    previous: datetime | None = None
    for instant, wall in _clock(zone_name, centre):
        if cron.wildcard:
            if cron.matches(wall):
                fires.append(instant)
            continue
        due = False
        if previous is not None:
            skipped = previous + MINUTE
            while skipped < wall:  # the clock jumped: run what it jumped over, now
                if cron.matches(skipped) and skipped not in fired:
                    fired.add(skipped)
                    due = True
                skipped += MINUTE
        if cron.matches(wall) and wall not in fired:
            fired.add(wall)
            due = True
        if due:
            fires.append(instant)
        previous = wall
    return [fire for fire in fires if fire > centre - DAY_S]


# --- strategies ------------------------------------------------------------------------------


def _field(values: st.SearchStrategy[int], most: int) -> st.SearchStrategy[str]:
    """A minute or hour field: '*', '*/n', a number, a range, a stepped range or a list.

    Ranges are increasing (croniter reads 'a-a' as '*', and wraps 'b-a'): those are croniter
    quirks, not DST, and the oracle reads fields as Vixie cron does."""
    pairs = st.tuples(values, values).map(
        lambda ab: (
            (min(ab), max(ab))
            if ab[0] != ab[1]
            else (min(ab[0], most - 1), min(ab[0], most - 1) + 1)
        )
    )
    single = values.map(str)
    ranged = pairs.map(lambda ab: f"{ab[0]}-{ab[1]}")
    stepped = st.tuples(pairs, st.integers(2, 20)).map(lambda p: f"{p[0][0]}-{p[0][1]}/{p[1]}")
    part = st.one_of(single, ranged, stepped)
    return st.one_of(
        st.just("*"),
        st.integers(2, most).map(lambda n: f"*/{n}"),
        single,
        ranged,
        stepped,
        st.lists(part, min_size=2, max_size=3).map(",".join),
        part.map(lambda p: f"{p},*/20" if most == 59 else f"{p},*/6"),  # a star, not first
    )


Window = tuple[str, float]  # a zone and a transition instant (or any instant, without DST)
windows = st.sampled_from(WINDOWS)


def _around(window: Window) -> tuple[datetime, datetime]:
    """The wall clock just before and at the transition."""
    zone, centre = window
    before = datetime.fromtimestamp(centre - 1, ZoneInfo(zone))
    return before, datetime.fromtimestamp(centre, ZoneInfo(zone))


def _hours(window: Window) -> st.SearchStrategy[int]:
    """Hours, drawn often from the ones the transition skips or repeats."""
    before, at = _around(window)
    near = sorted({before.hour, (before.hour + 1) % 24, at.hour})
    return st.one_of(st.sampled_from(near), st.integers(0, 23))


def _days(window: Window) -> tuple[st.SearchStrategy[int], st.SearchStrategy[int]]:
    """Days of the month and days of the week (cron's, 0 is Sunday), drawn often from the
    transition's date."""
    dates = _around(window)
    day_of_month = st.sampled_from(sorted({d.day for d in dates}))
    day_of_week = st.sampled_from(sorted({(d.weekday() + 1) % 7 for d in dates}))
    return st.one_of(day_of_month, st.integers(1, 31)), st.one_of(day_of_week, st.integers(0, 7))


_MINUTES = st.one_of(st.sampled_from([0, 15, 30, 45]), st.integers(0, 59))


@st.composite
def cron_cases(draw: st.DrawFn) -> tuple[str, Window]:
    """A window and a cron expression likely to have slots near its transition."""
    window = draw(windows)
    day_of_month, day_of_week = _days(window)
    minute = draw(_field(_MINUTES, 59))
    # a single hour half of the time: the transition's hour is where fixed and wildcard differ
    hour = draw(st.one_of(_hours(window).map(str), _field(_hours(window), 23)))
    dom = draw(st.one_of(st.just("*"), day_of_month.map(str), st.just("1-15"), st.just("5,26")))
    dow = draw(st.one_of(st.just("*"), day_of_week.map(str), st.just("1-5")))
    month = draw(st.sampled_from(["*", "*", "*", "3,4,9,10", "1-6"]))
    return f"{minute} {hour} {dom} {month} {dow}", window


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@st.composite
def typed_cases(draw: st.DrawFn) -> tuple[ScheduleType, dict[str, Any], str, Window]:
    """A window and an HOURLY, DAILY, WEEKLY or MONTHLY config with its cron expression,
    written here (not by the code under test)."""
    window = draw(windows)
    day_of_month, day_of_week = _days(window)
    kind = draw(st.sampled_from([S.HOURLY, S.DAILY, S.WEEKLY, S.MONTHLY]))
    minute, hour = draw(_MINUTES), draw(_hours(window))
    if kind is S.HOURLY:
        return kind, {"minute": minute}, f"{minute} * * * *", window
    if kind is S.DAILY:
        return kind, {"hour": hour, "minute": minute}, f"{minute} {hour} * * *", window
    if kind is S.WEEKLY:
        weekday = draw(day_of_week) % 7
        config = {"day_of_week": _DAY_NAMES[weekday], "hour": hour, "minute": minute}
        return kind, config, f"{minute} {hour} * * {weekday}", window
    day = draw(st.one_of(day_of_month, st.just("last")))
    config = {"day": day, "hour": hour, "minute": minute}
    return kind, config, f"{minute} {hour} {'L' if day == 'last' else day} * *", window


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_walk(
    schedule: ScheduleType, config: dict[str, Any], expression: str, window: Window
) -> None:
    zone, centre = window
    cfg = ScheduleConfig(**config, timezone=zone)
    got = walk(schedule, cfg, centre - DAY_S, centre + DAY_S)
    expected = oracle(expression, zone, centre)
    assert [utc(t) for t in got] == [utc(t) for t in expected], (expression, zone, utc(centre))


# --- property tests ----------------------------------------------------------------------


@_SETTINGS
@given(cron_cases())
def test_cron_walk_matches_the_oracle(case: tuple[str, Window]) -> None:
    expression, window = case
    _check_walk(S.CRON, {"expression": expression}, expression, window)


@_SETTINGS
@given(typed_cases())
def test_typed_schedules_walk_matches_the_oracle(
    case: tuple[ScheduleType, dict[str, Any], str, Window],
) -> None:
    schedule, config, expression, window = case
    _check_walk(schedule, config, expression, window)


@_SETTINGS
@given(
    st.one_of(cron_cases(), typed_cases().map(lambda case: (case[2], case[3]))),
    st.floats(-DAY_S, DAY_S),
)
def test_next_fire_from_any_instant_matches_the_oracle(
    case: tuple[str, Window], delta_s: float
) -> None:
    """Not only from the previous fire: from any instant, on a minute or between two."""
    expression, (zone, centre) = case
    after = centre + delta_s
    if delta_s > 0 and int(delta_s) % 3 == 0:
        after = float(math.floor(after / 60) * 60)  # exactly on a minute, often a fire
    got = next_fire_ts(S.CRON, ScheduleConfig(expression=expression, timezone=zone), after)
    later = [fire for fire in oracle(expression, zone, centre) if fire > after]
    if later:
        assert utc(got) == utc(later[0]), (expression, zone, utc(after))
    else:
        assert got is None or got > centre + DAY_S, (expression, zone, utc(after))


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["30 2 * * *", "0,30 2 * * *", "*/20 * * * *", "15 * * * *", "0 0 * * *"]),
    windows,
    st.sampled_from([(None, 7200.0), (1800.0, 5400.0), (600.0, None)]),
)
def test_offsets_ride_on_the_dst_slots(
    expression: str, window: Window, offsets: tuple[float | None, float | None]
) -> None:
    """With spread and jitter, the walk visits each DST-adjusted slot once, offsets added."""
    zone, centre = window
    spread, jitter = offsets
    cfg = ScheduleConfig(expression=expression, timezone=zone, spread=spread, jitter=jitter)
    start, stop = centre - DAY_S / 2, centre + DAY_S
    got = walk(S.CRON, cfg, start, stop)
    slots = oracle(expression, zone, centre)
    expected = sorted(
        fire
        for fire in (fire_ts("walker", slot, spread, jitter) for slot in slots)
        if start < fire <= stop
    )
    assert got == expected, (expression, zone, utc(centre))


# --- examples --------------------------------------------------------------------------------


def fires(
    schedule: ScheduleType, start: str, stop: str, zone: str, **config: Any
) -> list[str | None]:
    cfg = ScheduleConfig(**config, timezone=zone)
    return [utc(t) for t in walk(schedule, cfg, ts(start), ts(stop))]


def test_berlin_daily_in_the_spring_gap_runs_once_when_the_gap_ends() -> None:
    # 02:30 does not exist on 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z)
    got = fires(
        S.DAILY, "2026-03-28T12:00Z", "2026-03-29T12:00Z", "Europe/Berlin", hour=2, minute=30
    )
    assert got == ["2026-03-29T01:00Z"]


def test_berlin_daily_in_the_repeated_hour_runs_once_at_the_first() -> None:
    # 02:30 happens at 00:30Z (CEST) and again at 01:30Z (CET): only the first runs
    got = fires(
        S.DAILY, "2026-10-24T12:00Z", "2026-10-25T12:00Z", "Europe/Berlin", hour=2, minute=30
    )
    assert got == ["2026-10-25T00:30Z"]


def test_berlin_hourly_runs_in_both_repeated_hours() -> None:
    got = fires(S.HOURLY, "2026-10-24T23:00Z", "2026-10-25T03:00Z", "Europe/Berlin", minute=30)
    assert got == [
        "2026-10-24T23:30Z",  # 01:30 CEST
        "2026-10-25T00:30Z",  # 02:30 CEST
        "2026-10-25T01:30Z",  # 02:30 CET, again
        "2026-10-25T02:30Z",  # 03:30 CET
    ]


def test_berlin_hourly_has_no_fire_in_the_skipped_hour() -> None:
    got = fires(S.HOURLY, "2026-03-28T23:00Z", "2026-03-29T03:00Z", "Europe/Berlin", minute=30)
    # 00:30 CET, 01:30 CET, (02:30 never happens), 03:30 CEST, 04:30 CEST
    assert got == [
        "2026-03-28T23:30Z",
        "2026-03-29T00:30Z",
        "2026-03-29T01:30Z",
        "2026-03-29T02:30Z",
    ]


def test_new_york_every_15_minutes_runs_8_times_in_the_repeated_hour() -> None:
    # 01:00-01:59 happens at 05:00Z-05:59Z (EDT) and again at 06:00Z-06:59Z (EST)
    got = fires(
        S.CRON,
        "2026-11-01T04:59Z",
        "2026-11-01T06:59Z",
        "America/New_York",
        expression="*/15 * * * *",
    )
    assert len(got) == 8
    assert got[0] == "2026-11-01T05:00Z" and got[-1] == "2026-11-01T06:45Z"


def test_slots_in_one_gap_collapse_into_one_fire() -> None:
    got = fires(
        S.CRON, "2026-03-28T12:00Z", "2026-03-29T12:00Z", "Europe/Berlin", expression="0,30 2 * * *"
    )
    assert got == ["2026-03-29T01:00Z"]
    # a slot at the end of the gap (03:00) is the same instant: one fire too
    got = fires(
        S.CRON, "2026-03-28T12:00Z", "2026-03-29T12:00Z", "Europe/Berlin", expression="30 2,3 * * *"
    )
    assert got == ["2026-03-29T01:00Z", "2026-03-29T01:30Z"]


def test_lord_howe_half_hour_shifts() -> None:
    zone = "Australia/Lord_Howe"
    # spring, 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11): 02:15 runs at 02:30 (15:30Z)
    got = fires(S.DAILY, "2026-10-02T12:00Z", "2026-10-04T12:00Z", zone, hour=2, minute=15)
    assert got == ["2026-10-02T15:45Z", "2026-10-03T15:30Z"]
    # autumn, 2026-04-05: 02:00 (+11) falls back to 01:30 (+10:30): 01:45 runs once, first
    got = fires(S.DAILY, "2026-04-03T12:00Z", "2026-04-05T12:00Z", zone, hour=1, minute=45)
    assert got == ["2026-04-03T14:45Z", "2026-04-04T14:45Z"]
    # ... while a wildcard job repeats only the half hour that repeats
    got = fires(S.CRON, "2026-04-04T13:55Z", "2026-04-04T15:25Z", zone, expression="*/10 1 * * *")
    assert got == [
        "2026-04-04T14:00Z",
        "2026-04-04T14:10Z",
        "2026-04-04T14:20Z",
        "2026-04-04T14:30Z",
        "2026-04-04T14:40Z",
        "2026-04-04T14:50Z",
        "2026-04-04T15:00Z",  # 01:30 again
        "2026-04-04T15:10Z",
        "2026-04-04T15:20Z",
    ]


def test_santiago_midnight_gap_moves_a_midnight_job_to_one_oclock() -> None:
    # 2026-09-06 00:00 (-04) jumps to 01:00 (-03): midnight runs at 01:00, 04:00Z
    got = fires(S.DAILY, "2026-09-04T12:00Z", "2026-09-07T12:00Z", "America/Santiago", hour=0)
    assert got == ["2026-09-05T04:00Z", "2026-09-06T04:00Z", "2026-09-07T03:00Z"]
    # 2026-04-05 00:00 (-03) falls back to 23:00 (-04) on the 4th: 23:30 runs once, first
    got = fires(
        S.DAILY, "2026-04-03T12:00Z", "2026-04-05T12:00Z", "America/Santiago", hour=23, minute=30
    )
    assert got == ["2026-04-04T02:30Z", "2026-04-05T02:30Z"]


def test_chatham_quarter_hour_offset() -> None:
    # 2026-09-27 02:45 (+12:45) jumps to 03:45 (+13:45): 03:00 runs at 03:45, 14:00Z
    got = fires(S.DAILY, "2026-09-25T12:00Z", "2026-09-27T12:00Z", "Pacific/Chatham", hour=3)
    assert got == ["2026-09-25T14:15Z", "2026-09-26T14:00Z"]


def test_a_monthly_job_on_the_transition_day() -> None:
    # the last day of March 2026 is no transition, but New York's 2026-03-08 is: day 8 02:30
    got = fires(
        S.MONTHLY,
        "2026-03-01T00:00Z",
        "2026-03-31T00:00Z",
        "America/New_York",
        day=8,
        hour=2,
        minute=30,
    )
    assert got == ["2026-03-08T07:00Z"]  # 03:00 EDT


def test_asking_from_inside_the_repeated_hour() -> None:
    cfg = ScheduleConfig(hour=2, minute=30, timezone="Europe/Berlin")
    # after the first 02:30 (00:30Z) and during the second (01:30Z): next is the next day
    for after in (
        "2026-10-25T00:30Z",
        "2026-10-25T01:15Z",
        "2026-10-25T01:30Z",
        "2026-10-25T01:45Z",
    ):
        assert utc(next_fire_ts(S.DAILY, cfg, ts(after))) == "2026-10-26T01:30Z"
    # from inside the gap's run-up, the gap's fire is still ahead
    assert utc(next_fire_ts(S.DAILY, cfg, ts("2026-03-29T00:59:59.5Z"))) == "2026-03-29T01:00Z"


@pytest.mark.parametrize(
    ("expression", "wildcard"),
    [
        ("30 2 * * *", False),
        ("0 0-23 * * *", False),  # as cron: a rule on the text, not on the values
        ("0,30 2 * * *", False),
        ("5,*/20 2 * * *", False),  # the field does not start with '*'
        ("5 * * * *", True),
        ("*/15 * * * *", True),
        ("* 2 * * *", True),  # a wildcard minute is enough
        ("*/30 2 * * *", True),
        ("0 */2 * * *", True),
    ],
)
def test_wildcard_is_vixie_crons_rule(expression: str, wildcard: bool) -> None:
    assert is_wildcard_time(expression) is wildcard
    assert Cron(expression).wildcard is wildcard


def test_utc_and_kolkata_have_no_surprises() -> None:
    days = ["2026-03-28T02:00Z", "2026-03-29T02:00Z", "2026-03-30T02:00Z"]
    start, stop = "2026-03-27T12:00Z", "2026-03-30T12:00Z"
    assert fires(S.DAILY, start, stop, "UTC", hour=2) == days
    assert fires(S.DAILY, start, stop, "Asia/Kolkata", hour=7, minute=30) == days
