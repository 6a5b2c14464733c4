"""The ``trend`` action on flat, noisy-flat, rising and falling series: a forecast a person
can act on, or none (``days_until`` and ``at_ts`` null, with the reason) when there is no
trend."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tdauto.actions.monitoring import trend_of
from tdauto.monitoring import samples
from tdauto.settings import Settings
from tests.support.actions import make_ctx, run

NOW = 1_701_100_000.0
DAY = 86400.0
NO_TREND = "no trend: the slope is within the noise of the samples"


@pytest.mark.parametrize(
    ("times", "value"),
    [
        # three identical samples whose float slope is +4e-31: it forecast 1e32 days
        ((1700672741.2357316, 1700673452.5258603, 1700772687.002124), 24.9),
        # and -1e-31: it said 0.0 days ("full now") for a disk at half
        ((1700734004.7159061, 1700790929.8926113, 1701011342.1147273), 50.627302),
    ],
)
def test_identical_samples_have_no_trend(times: tuple[float, ...], value: float) -> None:
    result = trend_of([(t, value) for t in times], "disk_percent", None, NOW)

    assert result["forecast"]["days_until"] is None
    assert result["forecast"]["at_ts"] is None
    assert result["forecast"]["reason"] == NO_TREND
    assert result["forecast"]["value_now"] == pytest.approx(value)


def test_noisy_flat_series_has_no_trend() -> None:
    rng = random.Random(5)
    points = [(NOW - h * 3600, 55.0 + rng.gauss(0, 0.5)) for h in range(7 * 24, 0, -1)]

    result = trend_of(points, "disk_percent", None, NOW)

    assert result["forecast"]["days_until"] is None
    assert result["forecast"]["at_ts"] is None
    assert result["forecast"]["reason"] == NO_TREND
    assert result["fit"]["trend"] is False


def test_rising_noisy_series_gives_a_date() -> None:
    rng = random.Random(5)
    # 0.5 points a day from 60 %, with the same noise as the flat series
    points = [
        (NOW - h * 3600, 60.0 + 0.5 * (7 - h / 24) + rng.gauss(0, 0.5))
        for h in range(7 * 24, 0, -1)
    ]

    result = trend_of(points, "disk_percent", None, NOW)

    when = result["forecast"]
    assert when["days_until"] == pytest.approx((100 - 63.5) / 0.5, rel=0.1)
    assert datetime.fromtimestamp(when["at_ts"], UTC).year < 2025
    assert when["reason"] is None


def test_falling_percent_is_never_full() -> None:
    points = [(NOW - (9 - d) * DAY, 70.0 - 2 * d) for d in range(10)]

    when = trend_of(points, "disk_percent", None, NOW)["forecast"]

    assert when["days_until"] is None and when["at_ts"] is None
    assert when["reason"] == "moving away from the limit"


def test_a_limit_already_reached_is_now() -> None:
    points = [(NOW - (2 - d) * DAY, 100.0) for d in range(3)]

    when = trend_of(points, "disk_percent", None, NOW)["forecast"]

    assert when["days_until"] == 0.0 and when["reason"] == "limit reached"


def test_a_date_beyond_a_century_is_not_given() -> None:
    # a real but slow rise: 0.0001 points a day from 20 % is 800,000 days to 100 %
    points = [(NOW - (9 - d) * DAY, 20.0 + 0.0001 * d) for d in range(10)]

    when = trend_of(points, "disk_percent", None, NOW)["forecast"]

    assert when["days_until"] is None and when["at_ts"] is None
    assert when["reason"] == "beyond 100 years"


def test_trend_action_logs_no_trend_for_a_flat_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data", host="h1")
    ctx = make_ctx(settings)
    now = time.time()
    for d in range(3):
        sample = {"ts": now - (2 - d) * DAY, "host": "h1", "disk_percent": 24.9}
        ctx.store.append_history(samples.HISTORY, sample, 1000)

    with caplog.at_level(logging.INFO, logger="tdauto.test"):
        out = run("trend", ctx, {"metric": "disk_percent", "window": "7d"})

    assert out["forecast"]["days_until"] is None
    assert out["forecast"]["reason"] == NO_TREND
    assert f"days until 100: {NO_TREND}" in caplog.text
