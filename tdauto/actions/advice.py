"""What ``analyze`` measures and what it advises: its params (the window and the thresholds),
the statistics it computes (percentile, summary, linear trend) and the rules that turn one
task's numbers into recommendations.

A recommendation carries a machine-readable ``change`` (``{task_id, field, from, to}``) and a
``safe`` flag; ``tune`` (``tdauto.actions.tuning``) applies only safe changes, within the
bounds kept here so that advice and tune agree on them. Everything here is pure: no store, no
clock.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tdauto.models import ResourceClass, Task
from tdauto.settings import Settings
from tdauto.units import parse_duration_s

DAY_S = 86400.0
RETRY_BOUNDS = (0, 10)  # what tune may set a retry.max to
RETRY_STEP = 2  # how much one tune raises retries by
RETRY_RECOVERY_MIN = 0.2  # share of retried failures that must recover before more retries help
POOL_BOUNDS = (1, 64)


def pool_field(resource_class: ResourceClass) -> str:
    """The setting that sizes ``resource_class``'s pool (``TDAUTO_CONCURRENCY_CPU``)."""
    return f"TDAUTO_CONCURRENCY_{resource_class.value.upper()}"


def pool_sizes(settings: Settings) -> dict[str, int]:
    """``TDAUTO_CONCURRENCY_*`` -> its value, as configured for this process."""
    return {pool_field(c): int(getattr(settings, f"concurrency_{c.value}")) for c in ResourceClass}


# --- params and statistics --------------------------------------------------------------------


class AnalyzeParams(BaseModel):
    """Params of ``analyze``.

    - ``since``: the window of history, back from now ("7days", "12h"; default 7 days).
    - ``task``: only this task (name or id); default every task.
    - ``top``: how many of the slowest tasks and actions are listed.
    - ``min_runs``: finished runs a task (or queued actions a pool) needs before it gets
      advice, so one bad night is not a trend.
    - ``failure_alert``: failure rate (0-1) above which a task is flagged.
    - ``timeout_margin``: a p95 duration above this share of a timeout is "near" it.
    - ``queue_wait``: a p95 wait in a queue above this (seconds) means its pool is short.
    """

    model_config = ConfigDict(extra="forbid")

    since: float = Field(default=7 * DAY_S, description="window of history, seconds")
    task: str | None = Field(default=None, min_length=1, description="only this task")
    top: int = Field(default=5, ge=1, le=100)
    min_runs: int = Field(default=5, ge=1, le=100_000)
    failure_alert: float = Field(default=0.5, gt=0, le=1)
    timeout_margin: float = Field(default=0.8, gt=0, le=1)
    queue_wait: float = Field(default=30.0, description="seconds")

    _dur = field_validator("since", "queue_wait", mode="before")(
        classmethod(lambda cls, v: parse_duration_s(v))
    )


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (as ``get_execution_stats``)."""
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def summary(values: list[float]) -> dict[str, float] | None:
    """``p50``, ``p95``, ``max`` and ``avg`` in seconds, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return {
        "p50": round(percentile(ordered, 0.5), 3),
        "p95": round(percentile(ordered, 0.95), 3),
        "max": round(ordered[-1], 3),
        "avg": round(statistics.fmean(ordered), 3),
    }


def linear_trend(points: list[tuple[float, float]]) -> dict[str, Any] | None:
    """Least-squares line through ``(day, seconds)`` points: slope in seconds per day, r².

    None below three points or when every point has the same day. ``r2`` is None when every
    duration is the same (the line fits, but there is no variance to explain).
    """
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 1e-12:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in points)
    syy = sum((y - my) ** 2 for y in ys)
    slope = sxy / sxx
    return {
        "slope_s_per_day": round(slope, 4),
        "intercept_s": round(my - slope * mx, 3),
        "r2": None if syy <= 1e-12 else round(sxy * sxy / (sxx * syy), 4),
        "points": len(points),
    }


# --- advice -----------------------------------------------------------------------------------


def recommend(
    kind: str, message: str, safe: bool, task_id: str | None, field: str, old: Any, new: Any
) -> dict[str, Any]:
    change = {"task_id": task_id, "field": field, "from": old, "to": new}
    return {"kind": kind, "message": message, "safe": safe, "change": change}


def retry_advice(
    task: Task, recovered: Counter[int], exhausted: Counter[int]
) -> list[dict[str, Any]]:
    """Raise retries where failures that were retried often recovered.

    An action with its own retry policy is advised on ``actions.N.retry.max``, the others on
    the task's ``retry.max``; several actions sharing the task's policy make one change.
    """
    merged: dict[str, dict[str, Any]] = {}
    for index in sorted(set(recovered) | set(exhausted)):
        if index >= len(task.actions) or not exhausted[index]:
            continue
        spec = task.actions[index]
        own = spec.retry is not None
        current = (spec.retry or task.retry).max
        field = f"actions.{index}.retry.max" if own else "retry.max"
        saved, lost = recovered[index], exhausted[index]
        share = saved / (saved + lost)
        target = min(RETRY_BOUNDS[1], current + RETRY_STEP)
        if target <= current:
            continue
        if current == 0:
            message = (
                f"task {task.name!r}: action {index} ({spec.type}) failed {lost} time(s) "
                f"with no retries; retries may help if its failures are transient. Not marked "
                "safe: a retry runs the action again, so check it is idempotent first."
            )
            safe = False
        elif share >= RETRY_RECOVERY_MIN:
            message = (
                f"raise retries of task {task.name!r} from {current} to {target}: "
                f"{share:.0%} of its retried failures of action {index} ({spec.type}) "
                f"succeeded on retry ({saved} of {saved + lost}); {lost} failed after using "
                f"all {current}"
            )
            safe = True
        else:
            continue
        previous = merged.get(field)
        if previous is None or (safe and not previous["safe"]):
            merged[field] = recommend("retries", message, safe, task.id, field, current, target)
    return list(merged.values())


def timeout_advice(
    task: Task,
    row: dict[str, Any],
    action_durations: dict[int, list[float]],
    params: AnalyzeParams,
) -> list[dict[str, Any]]:
    """Flag a run deadline or an action timeout that the p95 duration comes near."""
    advice = []
    durations, trend = row["duration_s"], row["trend"]
    if task.deadline and durations and durations["p95"] >= params.timeout_margin * task.deadline:
        target = math.ceil(max(durations["max"], durations["p95"]) * 1.5)
        advice.append(
            recommend(
                "timeout",
                f"task {task.name!r}'s p95 duration ({durations['p95']:g}s) is near its deadline "
                f"({task.deadline:g}s); raise the deadline or make the task faster",
                False,
                task.id,
                "deadline",
                task.deadline,
                target,
            )
        )
    elif task.deadline and trend and trend["slope_s_per_day"] > 0 and (trend["r2"] or 0) >= 0.5:
        days_now = params.since / DAY_S
        today_s = trend["intercept_s"] + trend["slope_s_per_day"] * days_now
        days_left = (task.deadline - today_s) / trend["slope_s_per_day"]
        if days_left <= 30:
            advice.append(
                recommend(
                    "trend",
                    f"task {task.name!r} gets slower by {trend['slope_s_per_day']:g}s a day "
                    f"(r² {trend['r2']:g}); at this rate it reaches its deadline "
                    f"({task.deadline:g}s) in about {max(0.0, days_left):.0f} days",
                    False,
                    task.id,
                    "deadline",
                    task.deadline,
                    math.ceil(today_s + 30 * trend["slope_s_per_day"]),
                )
            )
    for index, values in sorted(action_durations.items()):
        if index >= len(task.actions) or not task.actions[index].timeout:
            continue
        timeout = task.actions[index].timeout
        assert timeout is not None
        stats = summary(values)
        if stats and stats["p95"] >= params.timeout_margin * timeout:
            advice.append(
                recommend(
                    "timeout",
                    f"task {task.name!r}: action {index} ({task.actions[index].type}) has a p95 "
                    f"of {stats['p95']:g}s, near its timeout ({timeout:g}s)",
                    False,
                    task.id,
                    f"actions.{index}.timeout",
                    timeout,
                    math.ceil(stats["max"] * 1.5),
                )
            )
    return advice


def pool_advice(
    waits: dict[str, list[float]], params: AnalyzeParams, pools: dict[str, int]
) -> list[dict[str, Any]]:
    advice = []
    for klass, values in sorted(waits.items()):
        stats = summary(values)
        field = pool_field(ResourceClass(klass))
        current = pools.get(field)
        if current is None or stats is None or len(values) < params.min_runs:
            continue
        if stats["p95"] >= params.queue_wait and current < POOL_BOUNDS[1]:
            advice.append(
                recommend(
                    "pool",
                    f"actions wait {stats['p95']:g}s (p95) in the {klass} queue: raise "
                    f"{field} from {current} to {current + 1} where the {klass} pool runs",
                    True,
                    None,
                    field,
                    current,
                    current + 1,
                )
            )
    return advice


__all__ = [
    "DAY_S",
    "POOL_BOUNDS",
    "RETRY_BOUNDS",
    "RETRY_RECOVERY_MIN",
    "RETRY_STEP",
    "AnalyzeParams",
    "linear_trend",
    "percentile",
    "pool_advice",
    "pool_field",
    "pool_sizes",
    "recommend",
    "retry_advice",
    "summary",
    "timeout_advice",
]
