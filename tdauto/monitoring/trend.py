"""Least-squares trends of a metric and when they reach a limit (e.g. days until the disk
is full), with the fit's quality so a reader can tell a forecast from a guess.

The line is ``statistics.linear_regression`` over ``(time, value)``; ``r2`` is the share
of the variance the line explains, ``stderr`` the residual standard error (metric units) and
``slope_stderr`` the slope's standard error (units per day). A slope within the noise is no
trend (``trend`` false): its Student's t is under the two-sided 95 % value for its degrees
of freedom. Float rounding is noise too: three identical samples give a slope of 1e-31, not
0, and residuals of the same size, so they have no trend. Without a trend, or
moving away from the limit, or beyond ``HORIZON_DAYS``, ``days_until`` and ``at_ts`` are
None and ``reason`` says which; a limit already reached gives ``days_until`` 0.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

DAY_S = 86400.0
HORIZON_DAYS = 100 * 365.25
"""Forecasts further out are not given (``at_ts`` stays a date a reader can use)."""
T95 = (12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
       2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
       2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip
"""Two-sided 95 % Student's t for 1..30 degrees of freedom (beyond: 1.96)."""

NO_TREND = "no trend: the slope is within the noise of the samples"
AWAY = "moving away from the limit"
TOO_FAR = f"beyond {HORIZON_DAYS / 365.25:.0f} years"


def t95(dof: int) -> float:
    """The two-sided 95 % critical t for ``dof`` degrees of freedom."""
    return T95[dof - 1] if dof <= len(T95) else 1.96


def fit(points: list[tuple[float, float]]) -> dict[str, Any] | None:
    """Slope per day and its standard error, intercept (value at the first point), r²,
    residual standard error, and whether the slope is a trend; None below three points or
    when every point has the same time."""
    if len(points) < 3:
        return None
    t0 = points[0][0]
    xs = [(t - t0) / DAY_S for t, _ in points]
    ys = [v for _, v in points]
    span = max(xs) - min(xs)
    if span <= 1e-12:
        return None
    slope, intercept = statistics.linear_regression(xs, ys)
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True)]
    ss_res = sum(r * r for r in residuals)
    mean, mean_x = statistics.fmean(ys), statistics.fmean(xs)
    ss_tot = sum((y - mean) ** 2 for y in ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    dof = len(points) - 2
    stderr = math.sqrt(ss_res / dof)
    slope_stderr = stderr / math.sqrt(sxx)
    trend = abs(slope) > t95(dof) * slope_stderr
    return {
        "slope_per_day": slope,
        "slope_stderr": slope_stderr,
        "trend": trend,
        "intercept": intercept,
        "origin_ts": t0,
        "mean": mean,
        "r2": None if ss_tot <= 1e-12 else max(0.0, 1.0 - ss_res / ss_tot),
        "stderr": stderr,
        "points": len(points),
        "span_days": span,
    }


def forecast(
    line: dict[str, Any], limit: float, now_ts: float, upper: bool = True
) -> dict[str, Any]:
    """When the fitted line reaches ``limit`` from ``now_ts``: an ``upper`` limit is reached
    from below (disk percent at 100), a lower one from above (free bytes at 0)."""
    slope = line["slope_per_day"] if line["trend"] else 0.0
    if line["trend"]:
        value_now = line["intercept"] + slope * (now_ts - line["origin_ts"]) / DAY_S
    else:
        value_now = line["mean"]
    found: dict[str, Any] = {"value_now": value_now, "limit": limit}
    if (value_now >= limit) if upper else (value_now <= limit):
        return {**found, "days_until": 0.0, "at_ts": now_ts, "reason": "limit reached"}
    if not line["trend"]:
        return {**found, "days_until": None, "at_ts": None, "reason": NO_TREND}
    days = (limit - value_now) / slope
    if days <= 0:
        return {**found, "days_until": None, "at_ts": None, "reason": AWAY}
    if days > HORIZON_DAYS:
        return {**found, "days_until": None, "at_ts": None, "reason": TOO_FAR}
    return {**found, "days_until": days, "at_ts": now_ts + days * DAY_S, "reason": None}
