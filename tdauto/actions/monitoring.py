"""Monitoring actions (the usage guide's monitoring processes): ``collect`` (data
collection), ``alert`` (alert management, in ``tdauto.actions.alerting``), ``report``
(report generation) and ``trend`` (trend analysis).

The work itself lives in ``tdauto.monitoring`` (samples, alerts, reports, trend) so the CLI
and ``/metrics`` share it; these are the actions' params models and handlers.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tdauto.actions import alerting  # noqa: F401 - registers ``alert``
from tdauto.actions.context import ActionContext
from tdauto.actions.monitor import DiskPathParams, host_snapshot, queue_snapshot
from tdauto.actions.registry import action
from tdauto.monitoring import samples
from tdauto.monitoring.alerts import Duration
from tdauto.monitoring.reports import write_report
from tdauto.monitoring.trend import fit, forecast


class CollectParams(DiskPathParams):
    """Params of ``collect``: ``disk_path`` (whose disk is sampled; default the data dir,
    confined), ``queues`` (add queue depths), ``keep`` (samples kept in the store)."""

    model_config = ConfigDict(extra="forbid")

    queues: bool = True
    keep: int = Field(default=20_000, ge=10, le=1_000_000)


@action("collect", resource_class="cpu", params=CollectParams, process_type="monitoring")
def collect(
    ctx: ActionContext, *, disk_path: str | None = None, queues: bool = True, keep: int = 20_000
) -> dict[str, Any]:
    """Sample this host (psutil) into metrics/ and the store."""
    path = ctx.confine(ctx.data_dir / disk_path, "disk_path") if disk_path else ctx.data_dir
    sample = samples.flatten(host_snapshot(ctx.settings, path), time.time())
    if queues:
        try:
            sample["queue_depth"] = queue_snapshot(ctx.settings)["depth"]
        except Exception as exc:  # a broker out of reach leaves the host figures useful
            ctx.logger.warning("collect: queue depths unavailable: %s", exc)
    written = samples.save(ctx.store, ctx.data_dir / "metrics", sample, keep)
    ctx.logger.info(
        "cpu %.0f%% mem %.0f%% disk %.0f%% -> %s",
        sample["cpu_percent"],
        sample["memory_percent"],
        sample["disk_percent"],
        written.name,
    )
    return {**sample, "file": str(written)}


class ReportParams(BaseModel):
    """Params of ``report``: ``period`` (back from now, default a day) and
    ``self_contained`` (inline the chart library in the page)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    period_s: Duration = Field(default=86400.0, alias="period")
    self_contained: bool = False


@action("report", resource_class="cpu", params=ReportParams, process_type="monitoring")
def report(
    ctx: ActionContext, *, period_s: float = 86400.0, self_contained: bool = False
) -> dict[str, Any]:
    """HTML (with charts) and JSON report of executions, durations, failures, host load."""
    until = datetime.now(UTC)
    made = write_report(
        ctx.store, ctx.settings, until - timedelta(seconds=period_s), until, self_contained
    )
    ctx.logger.info("report written: %s", made["html"])
    return made


Metric = Literal["disk_percent", "memory_percent", "cpu_percent", "load_per_cpu", "disk_free_bytes"]


class TrendParams(BaseModel):
    """Params of ``trend``: least-squares line of ``metric`` over ``window`` on ``host``
    (default this host), and when it reaches ``limit`` (default 100 for percents, 0 for
    free bytes)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    metric: Metric = "disk_percent"
    window_s: Duration = Field(default=7 * 86400.0, alias="window")
    host: str | None = None
    limit: float | None = None


def trend_of(
    points: list[tuple[float, float]], metric: str, limit: float | None, now_ts: float
) -> dict[str, Any]:
    """The fit and forecast the ``trend`` action reports (pure, for tests and the CLI)."""
    line = fit(points)
    if line is None:
        return {"metric": metric, "points": len(points), "fit": None, "forecast": None}
    upper = metric != "disk_free_bytes"  # free bytes fall to their limit, percents rise
    target = limit if limit is not None else (100.0 if upper else 0.0)
    return {
        "metric": metric,
        "points": len(points),
        "fit": line,
        "forecast": forecast(line, target, now_ts, upper),
    }


@action("trend", resource_class="cpu", params=TrendParams, process_type="monitoring")
def trend(
    ctx: ActionContext,
    *,
    metric: str = "disk_percent",
    window_s: float = 7 * 86400.0,
    host: str | None = None,
    limit: float | None = None,
) -> dict[str, Any]:
    """Least-squares forecast of a host metric (e.g. days until the disk is full)."""
    now = time.time()
    who = host or ctx.settings.host
    points = samples.series(ctx.store, metric, now - window_s, who)
    result = {"host": who, **trend_of(points, metric, limit, now)}
    ctx.logger.info("%s on %s: %s", metric, who, trend_line(result))
    return result


def trend_line(result: dict[str, Any]) -> str:
    """The ``trend`` result in one line a person reads (the action's log)."""
    line, when = result["fit"], result["forecast"]
    if line is None:
        return "not enough samples (collect first)"
    days = when["days_until"]
    until = f"{days:.1f}" if days is not None else when["reason"]
    return (
        f"slope {line['slope_per_day']:.4g}/day (+/- {line['slope_stderr']:.2g}), "
        f"r2 {line['r2']}, days until {when['limit']:g}: {until}"
    )
