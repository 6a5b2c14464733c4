"""Parsing of human durations ("90s", "5m", "2h", "7days") into seconds.

Kept apart so models, schedules and actions share one grammar and one error message.
"""

from __future__ import annotations

import math
import re

_UNITS_S: dict[str, float] = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

DURATION_HELP = 'a number of seconds or a number with a unit, e.g. "90s", "5m", "2h", "7days", "1w"'


def parse_duration_s(value: object) -> float:
    """Return ``value`` in seconds; raise ValueError saying the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}; use {DURATION_HELP}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float (10**400)
            raise ValueError(f"duration is too large (over 1e308 s); use {DURATION_HELP}") from None
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if not match or match.group(2).lower() not in _UNITS_S | {"": 1}:
            raise ValueError(f"invalid duration {value!r}; use {DURATION_HELP}")
        seconds = float(match.group(1)) * _UNITS_S.get(match.group(2).lower(), 1)
    else:
        raise ValueError(f"invalid duration {value!r}; use {DURATION_HELP}")
    if not math.isfinite(seconds):  # inf would read as "no limit", NaN as none either
        raise ValueError(f"invalid duration {value!r}; use {DURATION_HELP}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds
