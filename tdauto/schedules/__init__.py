"""Schedule math: when a task fires, previewed and described.

Pure functions of their arguments: nothing here reads the clock (except :func:`preview`
when it is given no time at all), talks to Redis or knows Celery, so the scheduler, the CLI
and the tests share one answer. Times are UTC epoch seconds (``*_ts``) or aware datetimes.

- :func:`next_fire_ts` the first fire strictly after a time, offsets included; the
  scheduler's one question.
- :func:`preview` the next few nominal fire times, for a user checking a schedule.
- :func:`describe` a one-line description ("daily at 02:00 UTC").
- :func:`check_schedule_config` the Task rules for ``schedule_config`` keys.
"""

from tdauto.schedules.describe import describe, format_duration
from tdauto.schedules.fire import check_schedule_config, next_fire_ts, preview, schedule_zone
from tdauto.schedules.slots import cron_expression

__all__ = [
    "check_schedule_config",
    "cron_expression",
    "describe",
    "format_duration",
    "next_fire_ts",
    "preview",
    "schedule_zone",
]
