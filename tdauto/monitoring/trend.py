"""Least-squares trends of a metric and when they reach a limit (e.g. days until the disk
is full), with the fit's quality so a reader can tell a forecast from a guess.

The line is ``statistics.linear_regression`` over ``(time, value)``; ``r2`` is the share
of the variance the line explains and ``stderr`` the residual standard error (metric units).
A flat or falling series never reaches a higher limit: ``days_until`` is then None.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

DAY_S = 86400.0


def fit(points: list[tuple[float, float]]) -> dict[str, Any] | None:
    """Slope per day, intercept (value at the first point), r², residual standard error;
    None below three points or when every point has the same time."""
    if len(points) < 3:
        return None
    t0 = points[0][0]
    xs = [(t - t0) / DAY_S for t, _ in points]
    ys = [v for _, v in points]
    if max(xs) - min(xs) <= 1e-12:
        return None
    slope, intercept = statistics.linear_regression(xs, ys)
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True)]
    ss_res = sum(r * r for r in residuals)
    mean = statistics.fmean(ys)
    ss_tot = sum((y - mean) ** 2 for y in ys)
    return {
        "slope_per_day": slope,
        "intercept": intercept,
        "origin_ts": t0,
        "r2": None if ss_tot <= 1e-12 else max(0.0, 1.0 - ss_res / ss_tot),
        "stderr": math.sqrt(ss_res / (len(points) - 2)) if len(points) > 2 else None,
        "points": len(points),
        "span_days": max(xs),
    }


def forecast(line: dict[str, Any], limit: float, now_ts: float) -> dict[str, Any]:
    """When the fitted line reaches ``limit`` (moving towards it), from ``now_ts``."""
    slope = line["slope_per_day"]
    value_now = line["intercept"] + slope * (now_ts - line["origin_ts"]) / DAY_S
    towards = (limit - value_now) * slope > 0
    if slope == 0 or not towards:
        reached = value_now >= limit if slope >= 0 else value_now <= limit
        return {"value_now": value_now, "limit": limit, "days_until": 0.0 if reached else None}
    days = (limit - value_now) / slope
    return {
        "value_now": value_now,
        "limit": limit,
        "days_until": days,
        "at_ts": now_ts + days * DAY_S,
    }
