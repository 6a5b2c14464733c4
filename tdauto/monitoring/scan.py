"""Execution statistics computed by reading every record: the baseline the rollups replace.

``get_execution_stats`` reads rollups (``tdauto.monitoring.stats``); this scan is kept as the
reference the rollups are checked against in tests and measured against in
``benchmarks/stats_cost.py``. Its cost grows with the number of executions.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from tdauto.models import Execution, ExecutionStatus
from tdauto.store.backend import Store

_FINISHED = (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = max(0, min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1))))
    return sorted_values[rank]


def _durations(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"avg": None, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {
        "avg": round(statistics.fmean(ordered), 3),
        "p50": round(_percentile(ordered, 0.50), 3),
        "p95": round(_percentile(ordered, 0.95), 3),
        "max": round(ordered[-1], 3),
    }


def scan_execution_stats(store: Store, since: datetime | None = None) -> dict[str, Any]:
    """``total``, ``by_status``, ``success_rate``, ``duration_seconds``, ``by_task``,
    ``by_action``, over executions created at or after ``since`` (all when None).

    ``success_rate`` is succeeded / (succeeded + failed + timed out), or None before any run
    finished; skipped, missed and cancelled runs are counted in ``by_status`` only.
    """
    executions = [
        e for e in store.list_executions(limit=None) if since is None or e.created_at >= since
    ]
    by_status = Counter(e.status.value for e in executions)
    finished = [e for e in executions if e.status in _FINISHED]
    succeeded = sum(1 for e in finished if e.status is ExecutionStatus.SUCCEEDED)
    return {
        "total": len(executions),
        "by_status": dict(by_status),
        "success_rate": round(succeeded / len(finished), 4) if finished else None,
        "duration_seconds": _durations([d for e in finished if (d := e.duration_s) is not None]),
        "by_task": _by_task(executions),
        "by_action": _by_action(executions),
    }


def _by_task(executions: list[Execution]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for e in sorted(executions, key=lambda x: x.created_at):
        row = result.setdefault(e.task_name, {"total": 0, "by_status": Counter()})
        row["total"] += 1
        row["by_status"][e.status.value] += 1
        row["last_status"] = e.status.value
        row["last_run_at"] = e.created_at.isoformat()
    for row in result.values():
        row["by_status"] = dict(row["by_status"])
    return result


def _by_action(executions: list[Execution]) -> dict[str, dict[str, Any]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    for e in executions:
        for run in e.actions:
            counts[run.type][run.status.value] += 1
            if run.started_at and run.finished_at and run.status is ExecutionStatus.SUCCEEDED:
                durations[run.type].append((run.finished_at - run.started_at).total_seconds())
    return {
        name: {
            "total": sum(c.values()),
            "by_status": dict(c),
            "duration_seconds": _durations(durations[name]),
        }
        for name, c in counts.items()
    }
