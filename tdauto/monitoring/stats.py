"""``get_task_stats`` and ``get_execution_stats`` (design section 9), read from rollups.

Execution statistics never read execution records: they add up the rollup buckets of the
window (``tdauto.monitoring.rollups``), at most a few dozen small hashes whatever the history
holds, plus one count per in-flight status. Keys of section 9 are the public contract; the
extra sections (``window``, ``in_flight``, ``efficiency``, ``scheduler``) are additions.

Semantics: a run is counted in the window in which it *ended* (its final state: succeeded,
failed, timed out, cancelled, skipped or missed); runs still going are in ``in_flight`` (and in
``by_status`` and ``total``) whatever the window. Percentiles are histogram estimates (see
``tdauto.monitoring.histogram``); ``avg`` and ``max`` are exact.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tdauto.models import ExecutionStatus, ResourceClass, Task
from tdauto.monitoring.histogram import summary
from tdauto.monitoring.rollups import fields, merge, window_ids
from tdauto.settings import Settings
from tdauto.store.backend import Store

S = ExecutionStatus
IN_FLIGHT = [S.PENDING, S.WAITING, S.QUEUED, S.RUNNING, S.RETRYING]
_FINISHED = (S.SUCCEEDED.value, S.FAILED.value, S.TIMED_OUT.value)


def task_stats(store: Store, next_runs: int = 10) -> dict[str, Any]:
    """``total``, ``enabled``, ``paused``, ``by_type``, ``by_schedule``, ``next_runs``."""
    tasks = store.list_tasks()
    upcoming = sorted((t for t in tasks if t.enabled and t.next_run_at), key=_next_key)
    return {
        "total": len(tasks),
        "enabled": sum(1 for t in tasks if t.enabled),
        "paused": sum(1 for t in tasks if not t.enabled),
        "by_type": dict(Counter(t.type.value for t in tasks)),
        "by_schedule": dict(Counter(t.schedule.value for t in tasks)),
        "next_runs": [
            {
                "task_id": t.id,
                "name": t.name,
                "next_run_at": t.next_run_at.isoformat() if t.next_run_at else None,
            }
            for t in upcoming[:next_runs]
        ],
    }


def _next_key(task: Task) -> datetime:
    assert task.next_run_at is not None
    return task.next_run_at


def window(store: Store, since: datetime | None, now_ts: float | None = None) -> dict[str, float]:
    """The rollup counters of the window ``[since, now]`` added up (all time when None)."""
    now = now_ts if now_ts is not None else time.time()
    ids = window_ids(None if since is None else since.timestamp(), now)
    return merge(store.read_rollups(ids))


def _hist(b: dict[str, float], prefix: str, key: str | None = None) -> dict[str, float | None]:
    """``summary`` of the histogram ``prefix`` (for ``key``, e.g. an action or a class)."""
    tail = f"|{key}" if key is not None else ""
    if key is None:
        counts = {k[0]: v for k, v in fields(b, prefix, 1).items()}
    else:
        counts = {k[0]: v for k, v in fields(b, prefix, 2).items() if k[1] == key}
    return summary(
        counts,
        b.get(f"{prefix}_sum{tail}", 0.0),
        b.get(f"{prefix}_n{tail}", 0.0),
        b.get(f"{prefix}_max{tail}"),
    )


def pool_slots(store: Store, settings: Settings | None) -> dict[str, float]:
    """Worker slots per resource class: the live pools' concurrency, summed over hosts; the
    configured concurrency when no worker of the class is publishing samples."""
    slots: dict[str, float] = {}
    for sample in store.samples():
        pool = str(sample.get("pool"))
        slots[pool] = slots.get(pool, 0.0) + float(sample.get("concurrency") or 0)
    settings = settings or Settings()
    for klass in ResourceClass:
        if not slots.get(klass.value):
            slots[klass.value] = float(getattr(settings, f"concurrency_{klass.value}"))
    return slots


def efficiency(
    b: dict[str, float], span_s: float, slots: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Queue wait, throughput and pool utilization per resource class over ``span_s``."""
    classes = sorted({k[0] for k in fields(b, "cl", 1)} | {c.value for c in ResourceClass})
    minutes = max(span_s, 1.0) / 60.0
    return {
        "queue_wait_seconds": {c: _hist(b, "qw", c) for c in classes},
        "throughput_per_minute": {c: round(b.get(f"cl|{c}", 0.0) / minutes, 3) for c in classes},
        "pool_utilization": {
            c: round(b.get(f"busy|{c}", 0.0) / (max(span_s, 1.0) * slots[c]), 4)
            if slots.get(c)
            else None
            for c in classes
        },
    }


def execution_stats(
    store: Store,
    since: datetime | None = None,
    settings: Settings | None = None,
    now_ts: float | None = None,
) -> dict[str, Any]:
    """``total``, ``by_status``, ``success_rate``, ``duration_seconds`` (``avg``, ``p50``,
    ``p95``, ``max``), ``by_task``, ``by_action``, plus ``window``, ``in_flight``,
    ``efficiency`` and ``scheduler``, for runs that ended at or after ``since`` (all when None).

    ``success_rate`` is succeeded / (succeeded + failed + timed out), or None before any run
    finished; skipped, missed and cancelled runs are counted in ``by_status`` only.
    """
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be an aware datetime (e.g. datetime.now(UTC) - timedelta)")
    now = now_ts if now_ts is not None else time.time()
    b = window(store, since, now)
    in_flight = {k: v for k, v in store.count_by_status(IN_FLIGHT).items() if v}
    ended = {k[0]: int(v) for k, v in fields(b, "st", 1).items() if v}
    by_status = {**ended, **in_flight}
    finished = sum(ended.get(s, 0) for s in _FINISHED)
    start = since.timestamp() if since is not None else b.get("first", now)
    span = max(now - start, 1.0)
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "success_rate": round(ended.get(S.SUCCEEDED.value, 0) / finished, 4) if finished else None,
        "duration_seconds": _hist(b, "ed"),
        "by_task": _by_task(store, b),
        "by_action": _by_action(b),
        "window": {
            "since": datetime.fromtimestamp(start, UTC).isoformat(),
            "until": datetime.fromtimestamp(now, UTC).isoformat(),
            "seconds": round(span, 3),
        },
        "in_flight": in_flight,
        "efficiency": efficiency(b, span, pool_slots(store, settings)),
        "scheduler": {
            "fires": int(b.get("fires", 0)),
            "lag_seconds": _hist(b, "fl"),
            "start_lag_seconds": _hist(b, "sl"),
            "missed": ended.get(S.MISSED.value, 0),
            "skipped": ended.get(S.SKIPPED.value, 0),
            "last_fire_at": _iso(b.get("fire_last")),
        },
    }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _counts_by_name(b: dict[str, float], prefix: str) -> dict[str, dict[str, Any]]:
    """``{name: {"total", "by_status"}}`` from the ``<prefix>|<status>|<name>`` counters."""
    result: dict[str, dict[str, Any]] = {}
    for (status, name), count in sorted(fields(b, prefix, 2).items()):
        if not count:
            continue
        row = result.setdefault(name, {"total": 0, "by_status": {}})
        row["total"] += int(count)
        row["by_status"][status] = int(count)
    return result


def _by_task(store: Store, b: dict[str, float]) -> dict[str, dict[str, Any]]:
    latest = store.rollup_latest()
    result = _counts_by_name(b, "tk")
    for name, row in result.items():
        last = latest.get(f"task|{name}")
        row["last_status"] = last[1] if last else None
        row["last_run_at"] = _iso(last[0]) if last else None
    return result


def _by_action(b: dict[str, float]) -> dict[str, dict[str, Any]]:
    result = _counts_by_name(b, "ac")
    for name, row in result.items():
        row["duration_seconds"] = _hist(b, "ad", name)
    return result
