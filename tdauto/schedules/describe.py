"""Short human descriptions of schedules, for the CLI, reports and log lines.

The wording is meant to be read at a glance ("daily at 02:00 UTC", "every 90s") and always
names the zone of a wall-clock schedule, because "02:00" alone is the question every
operator asks next. Durations are written in the grammar ``every`` accepts ("90s", "5m").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tdauto.models import ScheduleConfig, ScheduleType
from tdauto.schedules.fire import check_schedule_config, schedule_zone
from tdauto.schedules.slots import DAY_NAMES

_DAY_TITLES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_UNIT_S = (("d", 86400), ("h", 3600), ("m", 60))


def format_duration(seconds: float) -> str:
    """``seconds`` in the largest unit that divides it ("90s", "5m", "2h", "1d")."""
    if seconds == int(seconds):
        whole = int(seconds)
        for unit, size in _UNIT_S:
            if whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    return f"{seconds:g}s"


def _clock(hour: int | None, minute: int | None) -> str:
    return f"{hour or 0:02d}:{minute or 0:02d}"


def _local(value: datetime, zone: ZoneInfo) -> str:
    """``value`` on the schedule's wall clock (a naive value is already on it)."""
    if value.tzinfo is not None:
        value = value.astimezone(zone)
    return value.strftime("%Y-%m-%d %H:%M:%S" if value.second else "%Y-%m-%d %H:%M")


def _core(schedule: ScheduleType, config: ScheduleConfig, zone: ZoneInfo) -> str:
    zone_name = zone.key
    if schedule is ScheduleType.ONCE and config.at is not None:
        return f"once at {_local(config.at, zone)} {zone_name}"
    if schedule is ScheduleType.INTERVAL and config.every is not None:
        return f"every {format_duration(config.every)}"
    if schedule is ScheduleType.HOURLY:
        return f"hourly at :{config.minute or 0:02d} {zone_name}"
    if schedule is ScheduleType.DAILY:
        return f"daily at {_clock(config.hour, config.minute)} {zone_name}"
    if schedule is ScheduleType.WEEKLY and config.day_of_week is not None:
        day = _DAY_TITLES[DAY_NAMES.index(config.day_of_week)]
        return f"weekly on {day} at {_clock(config.hour, config.minute)} {zone_name}"
    if schedule is ScheduleType.MONTHLY and config.day is not None:
        day = "the last day" if config.day == "last" else f"day {config.day}"
        return f"monthly on {day} at {_clock(config.hour, config.minute)} {zone_name}"
    return f"cron {config.expression!r} {zone_name}"


def describe(
    schedule: ScheduleType | str,
    config: ScheduleConfig | Mapping[str, Any],
    *,
    default_tz: str = "UTC",
) -> str:
    """A one-line description of the schedule, e.g. "daily at 02:00 UTC", "every 90s",
    "cron '*/15 * * * *' Europe/Paris", with its spread, jitter and window when set."""
    schedule = ScheduleType(schedule)
    config = check_schedule_config(schedule, config)
    zone = schedule_zone(config, default_tz)
    extras: list[str] = []
    if config.spread:
        extras.append(f"spread {format_duration(config.spread)}")
    if config.jitter:
        extras.append(f"jitter {format_duration(config.jitter)}")
    if config.start_date is not None:
        extras.append(f"from {_local(config.start_date, zone)}")
    if config.end_date is not None:
        extras.append(f"until {_local(config.end_date, zone)}")
    text = _core(schedule, config, zone)
    return f"{text} ({', '.join(extras)})" if extras else text
