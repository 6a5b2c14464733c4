"""Schedule math: next_fire_ts, preview and describe, on ordinary (non-DST) days.

Pure: every test passes its times explicitly; nothing reads the clock. Cron-like types are
also checked against a brute-force minute-by-minute oracle written independently of croniter.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tdauto.models import ScheduleConfig, ScheduleType
from tdauto.schedules import (
    check_schedule_config,
    cron_expression,
    describe,
    format_duration,
    next_fire_ts,
    preview,
    slots,
)

S = ScheduleType


def ts(text: str) -> float:
    """An ISO time with its offset ("2026-11-26T10:00Z") as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def utc(value: float | None) -> str | None:
    """Epoch seconds as "YYYY-MM-DDTHH:MM[:SS]Z", for readable assertions."""
    if value is None:
        return None
    moment = datetime.fromtimestamp(value, UTC)
    pattern = "%Y-%m-%dT%H:%M:%SZ" if moment.second or moment.microsecond else "%Y-%m-%dT%H:%MZ"
    return moment.strftime(pattern)


def fire(schedule: ScheduleType, after: str, **config: Any) -> str | None:
    return utc(next_fire_ts(schedule, ScheduleConfig(**config), ts(after)))


# --- the examples of the issue ---------------------------------------------------------------


def test_daily_after_the_slot_fires_the_next_day() -> None:
    assert fire(S.DAILY, "2026-11-26T10:00Z", hour=2, minute=0) == "2026-11-27T02:00Z"


def test_daily_before_the_slot_fires_the_same_day() -> None:
    assert fire(S.DAILY, "2026-11-26T01:00Z", hour=2, minute=0) == "2026-11-26T02:00Z"


def test_the_fire_is_strictly_after_after_ts() -> None:
    assert fire(S.DAILY, "2026-11-26T02:00Z", hour=2) == "2026-11-27T02:00Z"
    assert fire(S.DAILY, "2026-11-26T01:59:59.999Z", hour=2) == "2026-11-26T02:00Z"


# --- every type, in UTC and in other zones ---------------------------------------------------

CASES: list[tuple[ScheduleType, dict[str, Any], str, str | None]] = [
    # HOURLY
    (S.HOURLY, {}, "2026-01-10T10:20Z", "2026-01-10T11:00Z"),
    (S.HOURLY, {"minute": 15}, "2026-01-10T10:20Z", "2026-01-10T11:15Z"),
    (S.HOURLY, {"minute": 15}, "2026-01-10T10:10Z", "2026-01-10T10:15Z"),
    (
        S.HOURLY,
        {"minute": 15, "timezone": "Europe/Paris"},
        "2026-07-10T10:20Z",
        "2026-07-10T11:15Z",
    ),
    (S.HOURLY, {"minute": 0, "timezone": "Asia/Kolkata"}, "2026-01-10T10:20Z", "2026-01-10T10:30Z"),
    # DAILY: Paris is UTC+1 in January and UTC+2 in July; New York UTC-5 and UTC-4.
    (S.DAILY, {"hour": 2, "timezone": "Europe/Paris"}, "2026-01-10T12:00Z", "2026-01-11T01:00Z"),
    (S.DAILY, {"hour": 2, "timezone": "Europe/Paris"}, "2026-07-10T12:00Z", "2026-07-11T00:00Z"),
    (
        S.DAILY,
        {"hour": 2, "timezone": "America/New_York"},
        "2026-01-10T12:00Z",
        "2026-01-11T07:00Z",
    ),
    (
        S.DAILY,
        {"hour": 2, "timezone": "America/New_York"},
        "2026-07-10T12:00Z",
        "2026-07-11T06:00Z",
    ),
    (S.DAILY, {"hour": 23, "minute": 45}, "2026-12-31T23:50Z", "2027-01-01T23:45Z"),
    # the zone's date, not UTC's: at 00:30 UTC on Jan 11 it is still Jan 10 in New York,
    # so Jan 10's 20:00 (01:00 UTC on Jan 11) is still ahead
    (
        S.DAILY,
        {"hour": 20, "timezone": "America/New_York"},
        "2026-01-11T00:30Z",
        "2026-01-11T01:00Z",
    ),
    # WEEKLY: 2026-01-07 is a Wednesday.
    (S.WEEKLY, {"day_of_week": "mon", "hour": 9}, "2026-01-07T12:00Z", "2026-01-12T09:00Z"),
    (S.WEEKLY, {"day_of_week": "wed", "hour": 9}, "2026-01-07T08:00Z", "2026-01-07T09:00Z"),
    (S.WEEKLY, {"day_of_week": "wed", "hour": 9}, "2026-01-07T09:00Z", "2026-01-14T09:00Z"),
    (S.WEEKLY, {"day_of_week": "friday", "minute": 30}, "2026-01-07T12:00Z", "2026-01-09T00:30Z"),
    (S.WEEKLY, {"day_of_week": 0}, "2026-01-07T12:00Z", "2026-01-11T00:00Z"),
    (S.WEEKLY, {"day_of_week": 7}, "2026-01-07T12:00Z", "2026-01-11T00:00Z"),
    (S.WEEKLY, {"day_of_week": 1, "hour": 9}, "2026-01-07T12:00Z", "2026-01-12T09:00Z"),
    (S.WEEKLY, {"day_of_week": "6", "hour": 9}, "2026-01-07T12:00Z", "2026-01-10T09:00Z"),
    # Saturday 23:30 in New York is Sunday 04:30 UTC
    (
        S.WEEKLY,
        {"day_of_week": "sat", "hour": 23, "minute": 30, "timezone": "America/New_York"},
        "2026-01-07T12:00Z",
        "2026-01-11T04:30Z",
    ),
    (
        S.WEEKLY,
        {"day_of_week": "mon", "hour": 9, "timezone": "Europe/Paris"},
        "2026-07-01T12:00Z",
        "2026-07-06T07:00Z",
    ),
    # MONTHLY: day 31 skips 30-day months (and February), as cron does.
    (S.MONTHLY, {"day": 31, "hour": 2}, "2026-04-01T00:00Z", "2026-05-31T02:00Z"),
    (S.MONTHLY, {"day": 31, "hour": 2}, "2026-01-31T03:00Z", "2026-03-31T02:00Z"),
    (S.MONTHLY, {"day": 31}, "2026-05-31T00:00Z", "2026-07-31T00:00Z"),
    (S.MONTHLY, {"day": 30}, "2026-01-30T12:00Z", "2026-03-30T00:00Z"),
    (S.MONTHLY, {"day": 1, "hour": 6, "minute": 30}, "2026-01-15T00:00Z", "2026-02-01T06:30Z"),
    (S.MONTHLY, {"day": "last", "hour": 2}, "2026-02-01T00:00Z", "2026-02-28T02:00Z"),
    (S.MONTHLY, {"day": "last", "hour": 2}, "2028-02-01T00:00Z", "2028-02-29T02:00Z"),
    (S.MONTHLY, {"day": "last", "hour": 2}, "2026-04-30T02:00Z", "2026-05-31T02:00Z"),
    (
        S.MONTHLY,
        {"day": "last", "hour": 0, "timezone": "Europe/Paris"},
        "2026-01-01T00:00Z",
        "2026-01-30T23:00Z",
    ),
    (
        S.MONTHLY,
        {"day": 15, "hour": 9, "timezone": "America/New_York"},
        "2026-07-01T00:00Z",
        "2026-07-15T13:00Z",
    ),
    # CRON
    (S.CRON, {"expression": "*/15 * * * *"}, "2026-01-10T10:07Z", "2026-01-10T10:15Z"),
    (S.CRON, {"expression": "*/15 * * * *"}, "2026-01-10T10:45Z", "2026-01-10T11:00Z"),
    (
        S.CRON,
        {"expression": "*/15 * * * *", "timezone": "Europe/Paris"},
        "2026-07-10T10:07Z",
        "2026-07-10T10:15Z",
    ),
    (
        S.CRON,
        {"expression": "0 9 * * 1-5", "timezone": "America/New_York"},
        "2026-01-09T15:00Z",  # Friday 10:00 in New York: next is Monday 09:00
        "2026-01-12T14:00Z",
    ),
    (
        S.CRON,
        {"expression": "30 8 1 * *", "timezone": "Europe/Paris"},
        "2026-06-15T00:00Z",
        "2026-07-01T06:30Z",
    ),
    (S.CRON, {"expression": "0 0 13 * 5"}, "2026-01-01T00:00Z", "2026-01-02T00:00Z"),  # OR rule
    (S.CRON, {"expression": "0 0 30 2 *"}, "2026-01-01T00:00Z", None),  # never
    # ONCE: a naive `at` is on the schedule zone's clock.
    (S.ONCE, {"at": "2026-12-01T09:00"}, "2026-11-26T10:00Z", "2026-12-01T09:00Z"),
    (
        S.ONCE,
        {"at": "2026-12-01T09:00", "timezone": "Europe/Paris"},
        "2026-11-26T10:00Z",
        "2026-12-01T08:00Z",
    ),
    (
        S.ONCE,
        {"at": "2026-07-01T09:00", "timezone": "America/New_York"},
        "2026-06-26T10:00Z",
        "2026-07-01T13:00Z",
    ),
    (
        S.ONCE,
        {"at": "2026-07-01T09:00+00:00", "timezone": "America/New_York"},
        "2026-06-26T10:00Z",
        "2026-07-01T09:00Z",
    ),
    (S.ONCE, {"at": "2026-12-01T09:00"}, "2026-12-01T09:00Z", None),
    (S.ONCE, {"at": "2026-12-01T09:00"}, "2027-01-01T00:00Z", None),
    # INTERVAL without an anchor: one interval after after_ts.
    (S.INTERVAL, {"every": 90}, "2026-01-10T10:00Z", "2026-01-10T10:01:30Z"),
    (S.INTERVAL, {"every": "2h"}, "2026-01-10T10:00Z", "2026-01-10T12:00Z"),
]


@pytest.mark.parametrize(("schedule", "config", "after", "expected"), CASES)
def test_next_fire_on_ordinary_days(
    schedule: ScheduleType, config: dict[str, Any], after: str, expected: str | None
) -> None:
    assert fire(schedule, after, **config) == expected


def test_default_tz_applies_when_the_schedule_has_no_zone() -> None:
    config = ScheduleConfig(hour=2)
    got = next_fire_ts(S.DAILY, config, ts("2026-01-10T12:00Z"), default_tz="Europe/Paris")
    assert utc(got) == "2026-01-11T01:00Z"
    own = ScheduleConfig(hour=2, timezone="America/New_York")
    got = next_fire_ts(S.DAILY, own, ts("2026-01-10T12:00Z"), default_tz="Europe/Paris")
    assert utc(got) == "2026-01-11T07:00Z"


def test_an_unknown_default_tz_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="default_tz"):
        next_fire_ts(S.DAILY, ScheduleConfig(hour=2), 0.0, default_tz="Mars/Olympus")


# --- cron expressions of the time-of-day types -----------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "config", "expression"),
    [
        (S.HOURLY, {}, "0 * * * *"),
        (S.HOURLY, {"minute": 5}, "5 * * * *"),
        (S.DAILY, {"hour": 2}, "0 2 * * *"),
        (S.WEEKLY, {"day_of_week": "sun", "hour": 3, "minute": 4}, "4 3 * * 0"),
        (S.WEEKLY, {"day_of_week": "sat"}, "0 0 * * 6"),
        (S.MONTHLY, {"day": 31, "hour": 2}, "0 2 31 * *"),
        (S.MONTHLY, {"day": "last", "hour": 2, "minute": 30}, "30 2 L * *"),
        (S.CRON, {"expression": "*/5 1-3 * * mon"}, "*/5 1-3 * * mon"),
    ],
)
def test_cron_expression(schedule: ScheduleType, config: dict[str, Any], expression: str) -> None:
    assert cron_expression(schedule, ScheduleConfig(**config)) == expression


# --- INTERVAL anchoring ----------------------------------------------------------------------


def test_interval_keeps_the_grid_of_its_anchor() -> None:
    # Given a task created at 10:00:10 that runs every 90 s
    config = ScheduleConfig(every=90)
    anchor = ts("2026-01-10T10:00:10Z")
    # When asked at any later time, the answer is on the anchor's grid
    got = next_fire_ts(S.INTERVAL, config, ts("2026-01-10T11:00:00Z"), anchor_ts=anchor)
    assert utc(got) == "2026-01-10T11:00:10Z"  # 10:00:10 + 40 * 90 s
    got = next_fire_ts(S.INTERVAL, config, ts("2026-01-10T11:00:10Z"), anchor_ts=anchor)
    assert utc(got) == "2026-01-10T11:01:40Z"


def test_interval_does_not_fire_at_creation() -> None:
    config = ScheduleConfig(every=60)
    anchor = ts("2026-01-10T10:00:00Z")
    got = next_fire_ts(S.INTERVAL, config, anchor - 30, anchor_ts=anchor)
    assert utc(got) == "2026-01-10T10:01Z"


def test_interval_start_date_is_the_anchor_and_the_first_slot() -> None:
    config = ScheduleConfig(every="1h", start_date=datetime(2026, 1, 10, 9, 30))
    anchor = ts("2026-01-01T00:00:17Z")  # ignored: start_date anchors the grid
    got = next_fire_ts(S.INTERVAL, config, ts("2026-01-05T00:00Z"), anchor_ts=anchor)
    assert utc(got) == "2026-01-10T09:30Z"
    got = next_fire_ts(S.INTERVAL, config, ts("2026-01-10T12:00Z"), anchor_ts=anchor)
    assert utc(got) == "2026-01-10T12:30Z"


def test_interval_start_date_in_the_schedule_zone() -> None:
    config = ScheduleConfig(every=600, start_date=datetime(2026, 7, 1, 8), timezone="Europe/Paris")
    got = next_fire_ts(S.INTERVAL, config, ts("2026-06-01T00:00Z"))
    assert utc(got) == "2026-07-01T06:00Z"


def test_interval_is_absolute_time_whatever_the_zone() -> None:
    config = ScheduleConfig(every=3600, timezone="America/New_York")
    anchor = ts("2026-01-10T10:15Z")
    got = next_fire_ts(S.INTERVAL, config, ts("2026-01-10T12:00Z"), anchor_ts=anchor)
    assert utc(got) == "2026-01-10T12:15Z"


def test_interval_below_one_second_is_refused() -> None:
    # a slot is identified to the second (task_id@fire_ts), so one per second at most
    with pytest.raises(ValidationError, match="every"):
        ScheduleConfig(every=0.25)


# --- start_date and end_date -----------------------------------------------------------------


def test_start_date_holds_fires_back_until_it() -> None:
    config = ScheduleConfig(hour=2, start_date=datetime(2026, 3, 1, tzinfo=UTC))
    assert utc(next_fire_ts(S.DAILY, config, ts("2026-01-10T00:00Z"))) == "2026-03-01T02:00Z"


def test_a_slot_on_the_start_date_fires() -> None:
    config = ScheduleConfig(hour=2, start_date=datetime(2026, 3, 1, 2))
    assert utc(next_fire_ts(S.DAILY, config, ts("2026-01-10T00:00Z"))) == "2026-03-01T02:00Z"


def test_naive_window_dates_are_in_the_schedule_zone() -> None:
    # 00:30 on March 1 in Paris is Feb 28 23:30 UTC: the 23:45 UTC slot is inside the window
    config = ScheduleConfig(
        expression="45 * * * *",
        timezone="Europe/Paris",
        start_date=datetime(2026, 3, 1, 0, 30),
        end_date=datetime(2026, 3, 1, 1, 0),
    )
    got = next_fire_ts(S.CRON, config, ts("2026-01-10T00:00Z"))
    assert utc(got) == "2026-02-28T23:45Z"
    assert next_fire_ts(S.CRON, config, ts("2026-02-28T23:45Z")) is None


def test_end_date_is_inclusive_and_then_there_is_none() -> None:
    config = ScheduleConfig(hour=2, end_date=datetime(2026, 1, 12, 2, tzinfo=UTC))
    assert utc(next_fire_ts(S.DAILY, config, ts("2026-01-11T12:00Z"))) == "2026-01-12T02:00Z"
    assert next_fire_ts(S.DAILY, config, ts("2026-01-12T02:00Z")) is None
    assert next_fire_ts(S.DAILY, config, ts("2027-01-01T00:00Z")) is None


def test_once_outside_its_window_never_fires() -> None:
    config = ScheduleConfig(at=datetime(2026, 12, 1, 9), end_date=datetime(2026, 11, 30))
    assert next_fire_ts(S.ONCE, config, ts("2026-01-01T00:00Z")) is None
    config = ScheduleConfig(at=datetime(2026, 12, 1, 9), start_date=datetime(2026, 12, 2))
    assert next_fire_ts(S.ONCE, config, ts("2026-01-01T00:00Z")) is None


# --- spread and jitter -----------------------------------------------------------------------


def test_spread_is_one_stable_offset_per_task() -> None:
    config = ScheduleConfig(hour=2, spread=600)
    after = ts("2026-01-10T12:00Z")
    first = next_fire_ts(S.DAILY, config, after, task_id="task-a")
    assert first == next_fire_ts(S.DAILY, config, after, task_id="task-a")
    assert first is not None
    slot = ts("2026-01-11T02:00Z")
    assert slot <= first < slot + 600
    # the same offset the next day, and another task gets another offset
    second = next_fire_ts(S.DAILY, config, first, task_id="task-a")
    assert second == first + 86400
    offsets = {next_fire_ts(S.DAILY, config, after, task_id=f"task-{n}") for n in range(20)}
    assert len(offsets) > 15


def test_no_task_id_means_no_offsets() -> None:
    config = ScheduleConfig(hour=2, spread=600, jitter=60)
    got = next_fire_ts(S.DAILY, config, ts("2026-01-10T12:00Z"))
    assert utc(got) == "2026-01-11T02:00Z"


def test_jitter_differs_from_slot_to_slot_within_its_bound() -> None:
    config = ScheduleConfig(expression="*/10 * * * *", jitter=120)
    cursor = ts("2026-01-10T00:00Z")
    offsets = []
    for _ in range(50):
        got = next_fire_ts(S.CRON, config, cursor, task_id="t1")
        assert got is not None and got > cursor
        slot = got - got % 600
        assert 0 <= got - slot < 120
        offsets.append(got - slot)
        cursor = got
    assert len(set(offsets)) > 40
    again = next_fire_ts(S.CRON, config, ts("2026-01-10T00:00Z"), task_id="t1")
    assert again == ts("2026-01-10T00:00Z") + offsets[0]


def test_the_fire_is_after_after_ts_even_inside_the_offset() -> None:
    # Given a fire at 02:00 + offset, asking from inside the offset window
    config = ScheduleConfig(hour=2, spread=3600, jitter=900)
    first = next_fire_ts(S.DAILY, config, ts("2026-01-10T12:00Z"), task_id="x")
    assert first is not None
    for delta in (-1800.0, -1.0, -0.001, 0.0, 0.001, 1.0):
        got = next_fire_ts(S.DAILY, config, first + delta, task_id="x")
        assert got is not None and got > first + delta
        assert got == (first if delta < 0 else next_fire_ts(S.DAILY, config, first, task_id="x"))


@pytest.mark.parametrize(
    ("schedule", "config"),
    [
        (S.INTERVAL, {"every": 60, "jitter": 300, "spread": 30}),
        (S.CRON, {"expression": "* * * * *", "jitter": 200}),
        (S.HOURLY, {"minute": 7, "jitter": 7200, "spread": 100}),
        (S.DAILY, {"hour": 3, "jitter": 3600, "timezone": "Europe/Paris"}),
    ],
)
def test_walking_fires_visits_each_slot_once_in_order(
    schedule: ScheduleType, config: dict[str, Any]
) -> None:
    """Even when jitter exceeds the slot spacing, so slots can fire out of order."""
    cfg = ScheduleConfig(**config)
    anchor = ts("2026-01-10T00:00:00Z")
    start, stop = anchor + 86400, anchor + 3 * 86400
    cursor = start
    fires = []
    while True:
        got = next_fire_ts(schedule, cfg, cursor, anchor_ts=anchor, task_id="walker")
        assert got is not None and got > cursor
        if got > stop:
            break
        fires.append(got)
        cursor = got
    # every slot's fire time in (start, stop], each slot's offsets found through a ONCE
    # schedule at that slot (the same task, the same spread and jitter)
    expected = set()
    slot_cursor = start - 86400
    while slot_cursor < stop:
        slot = next_fire_ts(schedule, cfg, slot_cursor, anchor_ts=anchor)
        assert slot is not None
        slot_cursor = slot
        jittered = next_fire_ts(
            S.ONCE,
            ScheduleConfig(
                at=datetime.fromtimestamp(slot, UTC),
                jitter=cfg.jitter,
                spread=cfg.spread,
            ),
            slot - 1e6,
            task_id="walker",
        )
        assert jittered is not None
        if start < jittered <= stop:
            expected.add(jittered)
    assert fires == sorted(expected)


def test_end_date_bounds_fire_times_not_only_slots() -> None:
    config = ScheduleConfig(hour=2, spread=3600, end_date=datetime(2026, 1, 12, 2, 0, 1))
    got = next_fire_ts(S.DAILY, config, ts("2026-01-11T12:00Z"), task_id="late")
    assert got is None or got <= ts("2026-01-12T02:00:01Z")
    for n in range(30):
        got = next_fire_ts(S.DAILY, config, ts("2026-01-11T12:00Z"), task_id=f"t{n}")
        assert got is None or got <= ts("2026-01-12T02:00:01Z")


# --- preview ---------------------------------------------------------------------------------


def test_preview_returns_count_sorted_aware_utc_datetimes() -> None:
    after = datetime(2026, 1, 10, 12, tzinfo=UTC)
    got = preview(S.DAILY, {"hour": 2, "timezone": "Europe/Paris"}, 4, after)
    assert got == [datetime(2026, 1, d, 1, tzinfo=UTC) for d in (11, 12, 13, 14)]
    assert all(moment.tzinfo is UTC for moment in got)


def test_preview_default_after_is_now_and_naive_is_utc() -> None:
    now = datetime(2026, 1, 10, 10, 7)
    got = preview(S.CRON, {"expression": "*/15 * * * *"}, 3, now=now)
    assert got == [datetime(2026, 1, 10, 10, m, tzinfo=UTC) for m in (15, 30, 45)]
    assert preview(S.CRON, {"expression": "*/15 * * * *"}, 3, now) == got


def test_preview_of_an_interval_starts_one_interval_after() -> None:
    after = datetime(2026, 1, 10, 10, tzinfo=UTC)
    got = preview(S.INTERVAL, {"every": "90s"}, 3, after)
    assert got == [after + timedelta(seconds=90 * k) for k in (1, 2, 3)]


def test_preview_leaves_out_task_offsets() -> None:
    after = datetime(2026, 1, 10, 10, tzinfo=UTC)
    got = preview(S.HOURLY, {"minute": 30, "spread": 600, "jitter": 60}, 2, after)
    assert got == [datetime(2026, 1, 10, h, 30, tzinfo=UTC) for h in (10, 11)]


def test_preview_stops_when_the_schedule_ends() -> None:
    after = datetime(2026, 1, 10, tzinfo=UTC)
    assert preview(S.ONCE, {"at": "2026-02-01T00:00Z"}, 5, after) == [
        datetime(2026, 2, 1, tzinfo=UTC)
    ]
    assert preview(S.DAILY, {"hour": 2}, 0, after) == []
    ended = {"hour": 2, "end_date": "2026-01-12T03:00Z"}
    assert len(preview(S.DAILY, ended, 5, after)) == 3  # Jan 10, 11 and 12


@pytest.mark.parametrize(
    ("schedule", "config", "key"),
    [
        (S.HOURLY, {"minute": 5, "hour": 2}, "hour"),
        (S.DAILY, {"hour": 2, "hours": 3}, "hours"),
        (S.INTERVAL, {"every": 60, "at": "2026-01-01T00:00Z"}, "at"),
        (S.DAILY, {"minute": 5}, "hour"),
        (S.CRON, {"expression": "* * *"}, "expression"),
        (S.WEEKLY, {"day_of_week": "someday"}, "day_of_week"),
    ],
)
def test_preview_rejects_keys_naming_them(
    schedule: ScheduleType, config: dict[str, Any], key: str
) -> None:
    after = datetime(2026, 1, 10, tzinfo=UTC)
    with pytest.raises((ValueError, ValidationError), match=key):
        preview(schedule, config, 3, after)


def test_check_schedule_config_accepts_what_a_task_accepts() -> None:
    checked = check_schedule_config("weekly", {"day_of_week": 1, "timezone": "Europe/Paris"})
    assert checked.day_of_week == "mon"
    with pytest.raises(ValueError, match="minute"):
        check_schedule_config(S.ONCE, ScheduleConfig(at=datetime(2026, 1, 1), minute=3))


# --- describe --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "config", "text"),
    [
        (S.DAILY, {"hour": 2}, "daily at 02:00 UTC"),
        (S.INTERVAL, {"every": 90}, "every 90s"),
        (S.INTERVAL, {"every": "2h"}, "every 2h"),
        (
            S.CRON,
            {"expression": "*/15 * * * *", "timezone": "Europe/Paris"},
            "cron '*/15 * * * *' Europe/Paris",
        ),
        (S.HOURLY, {"minute": 5}, "hourly at :05 UTC"),
        (S.WEEKLY, {"day_of_week": 0, "hour": 9, "minute": 30}, "weekly on Sunday at 09:30 UTC"),
        (S.MONTHLY, {"day": "last", "hour": 23}, "monthly on the last day at 23:00 UTC"),
        (S.MONTHLY, {"day": 31}, "monthly on day 31 at 00:00 UTC"),
        (
            S.ONCE,
            {"at": "2026-12-01T09:00Z", "timezone": "Europe/Paris"},
            "once at 2026-12-01 10:00 Europe/Paris",
        ),
        (
            S.DAILY,
            {"hour": 2, "spread": 300, "jitter": 30, "end_date": "2027-01-01T00:00"},
            "daily at 02:00 UTC (spread 5m, jitter 30s, until 2027-01-01 00:00)",
        ),
    ],
)
def test_describe(schedule: ScheduleType, config: dict[str, Any], text: str) -> None:
    assert describe(schedule, ScheduleConfig(**config)) == text


def test_format_duration() -> None:
    assert [format_duration(s) for s in (90, 300, 7200, 86400, 0.5)] == [
        "90s",
        "5m",
        "2h",
        "1d",
        "0.5s",
    ]


# --- cross-check against a brute-force oracle ------------------------------------------------


def _field(spec: str, low: int, high: int) -> set[int]:
    """The values a cron field matches (numbers, '*', ranges, steps and lists only)."""
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


def _matcher(expression: str) -> Callable[[time.struct_time], bool]:
    """Vixie cron's rule, written without croniter: when both day fields are restricted a
    day matches either; otherwise both must match."""
    minute, hour, dom, month, dow = expression.split()
    minutes, hours = _field(minute, 0, 59), _field(hour, 0, 23)
    doms, months = _field(dom, 1, 31), _field(month, 1, 12)
    dows = {d % 7 for d in _field(dow, 0, 7)}
    either = not dom.startswith("*") and not dow.startswith("*")

    def match(tm: time.struct_time) -> bool:
        if tm.tm_min not in minutes or tm.tm_hour not in hours or tm.tm_mon not in months:
            return False
        day_ok, weekday_ok = tm.tm_mday in doms, (tm.tm_wday + 1) % 7 in dows
        return (day_ok or weekday_ok) if either else (day_ok and weekday_ok)

    return match


def _oracle(expression: str, after_ts: float, utc_offset_s: int = 0) -> float:
    """The first whole minute strictly after ``after_ts`` whose wall clock (UTC shifted by a
    fixed offset) matches, found by stepping one minute at a time."""
    match = _matcher(expression)
    minute_ts = (int(after_ts // 60) + 1) * 60
    while not match(time.gmtime(minute_ts + utc_offset_s)):
        minute_ts += 60
    return float(minute_ts)


def _random_field(rng: random.Random, low: int, high: int) -> str:
    a, b = sorted(rng.sample(range(low, high + 1), 2))
    return rng.choice(
        [
            "*",
            f"*/{rng.randint(2, 20)}",
            str(rng.randint(low, high)),
            f"{a},{b}",
            f"{a}-{b}",
            f"{a}-{b}/{rng.randint(2, 5)}",
        ]
    )


def _random_case(rng: random.Random) -> tuple[ScheduleType, ScheduleConfig, str]:
    kind = rng.choice([S.DAILY, S.HOURLY, S.CRON, S.CRON])
    if kind is S.HOURLY:
        config = ScheduleConfig(minute=rng.randint(0, 59))
    elif kind is S.DAILY:
        config = ScheduleConfig(hour=rng.randint(0, 23), minute=rng.randint(0, 59))
    else:
        dom = rng.choice(["*", "*", "*", str(rng.randint(1, 28)), "1-15", "10,20"])
        dow = rng.choice(["*", "*", "*", "1-5", "0,6", str(rng.randint(0, 7))])
        month = rng.choice(["*"] * 9 + ["*/2"])
        expression = f"{_random_field(rng, 0, 59)} {_random_field(rng, 0, 23)} {dom} {month} {dow}"
        config = ScheduleConfig(expression=expression)
    return kind, config, cron_expression(kind, config)


@pytest.mark.parametrize(("zone", "utc_offset_s"), [("UTC", 0), ("Asia/Kolkata", 19800)])
def test_cross_check_against_a_minute_by_minute_oracle(zone: str, utc_offset_s: int) -> None:
    rng = random.Random(20261126 + utc_offset_s)
    low, high = ts("2026-01-01T00:00Z"), ts("2028-12-31T00:00Z")
    for _ in range(300):
        kind, config, expression = _random_case(rng)
        after = rng.uniform(low, high)
        if rng.random() < 0.3:
            after = float(int(after // 60) * 60)  # exactly on a minute, often a slot
        got = next_fire_ts(kind, config, after, default_tz=zone)
        assert got == _oracle(expression, after, utc_offset_s), (kind, expression, utc(after))


# --- the stepped fast path equals croniter ---------------------------------------------------


@given(
    minute=st.integers(0, 59),
    hour=st.one_of(st.none(), st.integers(0, 23)),
    weekday=st.one_of(st.none(), st.integers(0, 7)),
    start=st.datetimes(datetime(1971, 1, 1), datetime(2099, 1, 1)),
)
def test_stepped_matches_equal_croniters(
    minute: int, hour: int | None, weekday: int | None, start: datetime
) -> None:
    """``M * * * *``, ``M H * * *`` and ``M H * * D`` (what HOURLY, DAILY and WEEKLY make) are
    stepped without croniter; on the naive clock they give croniter's matches, in order."""
    fields = [str(minute), "*" if hour is None else str(hour), "*", "*"]
    fields.append("*" if weekday is None or hour is None else str(weekday))
    expression = " ".join(fields)
    assert slots._simple_steps(expression) is not None
    stepped = list(itertools.islice(slots._wall_matches(expression, start), 4))
    expected = list(itertools.islice(slots._croniter_matches(expression, start), 4))
    assert stepped == expected, expression


@pytest.mark.parametrize(
    "expression",
    ["*/5 * * * *", "0 2 1 * *", "0 2 * 3 *", "5 * * * 1", "0 2-4 * * *", "0 9 * * 1-5"],
)
def test_other_expressions_go_through_croniter(expression: str) -> None:
    assert slots._simple_steps(expression) is None
