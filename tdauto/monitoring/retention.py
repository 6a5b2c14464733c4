"""Retention: the system job that removes what is older than the configured ages and says
what it removed (in its log line and its return value).

- executions that ended (and their logs) older than ``TDAUTO_RETENTION_EXECUTIONS_DAYS``;
  executions still in flight are never removed, whatever their age;
- execution logs older than ``TDAUTO_RETENTION_LOGS_DAYS`` (the records stay);
- metrics older than ``TDAUTO_RETENTION_METRICS_DAYS``: hour and day rollup buckets, host
  samples and alert and rebalance histories in the store, and this host's
  ``metrics/samples-<day>.jsonl`` files; minute buckets after ``MINUTE_KEEP_S``.

The rollup counters of ``all`` are not touched: totals since the beginning stay totals.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from tdauto.monitoring.alerts import HISTORY as ALERTS
from tdauto.monitoring.rollups import MINUTE_KEEP_S
from tdauto.monitoring.samples import HISTORY as SAMPLES
from tdauto.settings import Settings
from tdauto.store.backend import Store

log = logging.getLogger(__name__)
DAY_S = 86400.0
BATCH = 10_000
HISTORIES = (SAMPLES, ALERTS, "rebalance")


def _metrics_files(settings: Settings, before_ts: float) -> list[str]:
    """This host's day files of samples whose whole day ended before ``before_ts``."""
    folder = settings.data_path / "metrics"
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.glob("samples-*.jsonl")):
        try:
            day = datetime.strptime(path.stem.removeprefix("samples-"), "%Y-%m-%d")
        except ValueError:
            continue
        if day.replace(tzinfo=UTC).timestamp() + DAY_S <= before_ts:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def run_retention(store: Store, settings: Settings, now_ts: float | None = None) -> dict[str, Any]:
    """Remove everything past its age; returns the cutoffs and what was removed."""
    now = now_ts if now_ts is not None else time.time()
    executions_before = now - settings.retention_executions_days * DAY_S
    logs_before = now - settings.retention_logs_days * DAY_S
    metrics_before = now - settings.retention_metrics_days * DAY_S
    executions: list[str] = []
    while True:
        batch = store.purge_executions(executions_before, BATCH)
        executions += batch
        if len(batch) < BATCH:
            break
    logs = 0
    while True:
        n = store.purge_logs(logs_before, BATCH)
        logs += n
        if n < BATCH:
            break
    rollups = store.purge_rollups(
        {"m": now - MINUTE_KEEP_S, "h": metrics_before, "d": metrics_before}
    )
    histories = {kind: store.purge_history(kind, metrics_before) for kind in HISTORIES}
    files = _metrics_files(settings, metrics_before)
    report = {
        "cutoffs": {
            "executions": datetime.fromtimestamp(executions_before, UTC).isoformat(),
            "logs": datetime.fromtimestamp(logs_before, UTC).isoformat(),
            "metrics": datetime.fromtimestamp(metrics_before, UTC).isoformat(),
        },
        "removed": {
            "executions": len(executions),
            "logs": logs,
            "rollup_buckets": rollups,
            "history_records": histories,
            "metrics_files": files,
        },
        "execution_ids": executions[:100],
    }
    log.info(
        "retention removed %d executions, %d logs, %d rollup buckets, %s history records, "
        "%d metrics files",
        len(executions),
        logs,
        rollups,
        histories,
        len(files),
    )
    return report
