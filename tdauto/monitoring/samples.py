"""Host samples of the ``collect`` action: one flat record per host and time, kept in the
store (``host_samples`` history, so alerts, trends and reports see every host) and as JSON
lines by day under ``metrics/`` on the host that took it (a plain file an operator can
grep or ship elsewhere).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tdauto.private import opener, private_dir
from tdauto.store.backend import Store

HISTORY = "host_samples"
METRICS = ("cpu_percent", "memory_percent", "disk_percent", "disk_free_bytes", "load_per_cpu")


def flatten(host: dict[str, Any], ts: float) -> dict[str, Any]:
    """The ``monitor`` action's host section as one flat sample."""
    return {
        "ts": ts,
        "host": host["name"],
        "cpu_percent": host["cpu_percent"],
        "memory_percent": host["memory"]["used_percent"],
        "disk_percent": host["disk"]["used_percent"],
        "disk_free_bytes": host["disk"]["free_bytes"],
        "disk_total_bytes": host["disk"]["total_bytes"],
        "disk_path": host["disk"]["path"],
        "load_per_cpu": host["load_per_cpu"],
    }


def day_file(metrics_dir: Path, ts: float) -> Path:
    return metrics_dir / f"samples-{datetime.fromtimestamp(ts, UTC):%Y-%m-%d}.jsonl"


def save(store: Store, metrics_dir: Path, sample: dict[str, Any], keep: int) -> Path:
    """Write ``sample`` to the store's history and to its day's JSON-lines file."""
    store.append_history(HISTORY, sample, keep)
    path = day_file(private_dir(metrics_dir), float(sample["ts"]))
    with open(path, "a", encoding="utf-8", opener=opener) as handle:
        handle.write(json.dumps(sample) + "\n")
    return path


def recent(store: Store, kind: str, since_ts: float, page: int = 500) -> list[dict[str, Any]]:
    """Records of the history ``kind`` from ``since_ts`` on, newest first, read in growing
    pages so a short window does not load the whole history."""
    limit = page
    while True:
        records = store.history(kind, limit)
        if len(records) < limit or float(records[-1].get("ts", 0)) < since_ts:
            return [r for r in records if float(r.get("ts", 0)) >= since_ts]
        limit *= 4


def series(
    store: Store, metric: str, since_ts: float, host: str | None = None
) -> list[tuple[float, float]]:
    """``(ts, value)`` of ``metric`` since ``since_ts`` (one host, or all), oldest first."""
    points = []
    for record in recent(store, HISTORY, since_ts):
        ts = float(record.get("ts", 0))
        if host is not None and record.get("host") != host:
            continue
        value = record.get(metric)
        if isinstance(value, int | float):
            points.append((ts, float(value)))
    return sorted(points)


def now() -> float:
    return time.time()
