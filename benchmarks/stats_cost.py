"""Cost of ``get_execution_stats`` / ``get_task_stats`` at 100,000 executions: rollups
against the scan of every record they replaced (``tdauto.monitoring.scan``), per store.

For each store (the file store of local mode in a temp data dir, and a ``redis-server`` the
script starts on a free port), it writes ``--executions`` finished executions (synthetic: 20
tasks, two actions each, one run every 30 s, mixed statuses; ``tests/support/history.py``)
with their rollups, then times, median of ``--runs``:

- baseline: ``scan_execution_stats`` (reads and validates every record);
- ``execution_stats()`` (all time), ``since=`` 1 hour and 7 days before the last run;
- ``task_stats()``;
- the per-end cost the engine pays: ``record_final`` on ``--writes`` more executions.

It prints a table and the ratio scan / rollups. Bulk loading bypasses the per-end path (the
rollups of the 100,000 are added up in memory and written per bucket) so the set-up takes
seconds, not the hour 100,000 fsynced writes would.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tdauto.models import Execution  # noqa: E402
from tdauto.monitoring.rollups import execution_delta, record_final  # noqa: E402
from tdauto.monitoring.scan import scan_execution_stats  # noqa: E402
from tdauto.monitoring.stats import execution_stats, task_stats  # noqa: E402
from tdauto.store import FileStore, RedisStore, Store  # noqa: E402
from tdauto.store.backend import RollupBucket, RollupDelta  # noqa: E402
from tests.support.history import synthetic_execution  # noqa: E402


def bulk_rollups(store: Store, executions: list[Execution]) -> None:
    """The rollups of ``executions`` added up in memory, written once per bucket."""
    acc: dict[RollupBucket, RollupDelta] = {}
    latest: dict[str, tuple[float, str]] = {}
    for ex in executions:
        delta = execution_delta(ex)
        for bucket in delta.buckets:
            into = acc.setdefault(bucket, RollupDelta([bucket]))
            for k, v in delta.incr.items():
                into.incr[k] = into.incr.get(k, 0.0) + v
            for k, v in delta.maxima.items():
                into.maxima[k] = max(into.maxima.get(k, v), v)
            for k, v in delta.minima.items():
                into.minima[k] = min(into.minima.get(k, v), v)
        for k, pair in delta.latest.items():
            if k not in latest or latest[k][0] <= pair[0]:
                latest[k] = pair
    for delta in acc.values():
        store.add_rollup(delta)
    if latest:
        store.add_rollup(RollupDelta([RollupBucket("all", "all")], latest=latest))


def load(store: Store, executions: list[Execution], data_dir: Path | None) -> None:
    if isinstance(store, FileStore) and data_dir is not None:
        folder = data_dir / "executions"
        for ex in executions:
            (folder / f"{ex.id}.json").write_text(ex.model_dump_json())
    else:
        snap = store.snapshot()
        snap["executions"] = [json.loads(ex.model_dump_json()) for ex in executions]
        store.restore(snap)
    bulk_rollups(store, executions)


def timed(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(name: str, store: Store, data_dir: Path | None, args: argparse.Namespace) -> dict:
    import random

    rng = random.Random(7)
    from datetime import UTC, datetime

    start = datetime(2024, 6, 1, tzinfo=UTC)
    made = [synthetic_execution(n, start, rng) for n in range(args.executions)]
    t0 = time.perf_counter()
    load(store, made, data_dir)
    load_s = time.perf_counter() - t0
    last = max(e.finished_at for e in made if e.finished_at)
    now = last.timestamp() + 1
    row: dict[str, Any] = {"store": name, "executions": args.executions, "load_s": load_s}
    row["scan_all_s"] = timed(lambda: scan_execution_stats(store), args.scan_runs)
    row["rollup_all_s"] = timed(lambda: execution_stats(store, now_ts=now), args.runs)
    hour = last - timedelta(hours=1)
    week = last - timedelta(days=7)
    row["rollup_1h_s"] = timed(lambda: execution_stats(store, hour, now_ts=now), args.runs)
    row["rollup_7d_s"] = timed(lambda: execution_stats(store, week, now_ts=now), args.runs)
    row["scan_7d_s"] = timed(lambda: scan_execution_stats(store, week), args.scan_runs)
    row["task_stats_s"] = timed(lambda: task_stats(store), args.runs)
    extra = [synthetic_execution(args.executions + n, start, rng) for n in range(args.writes)]
    t0 = time.perf_counter()
    for ex in extra:
        record_final(store, ex)
    row["record_final_ms"] = (time.perf_counter() - t0) / max(len(extra), 1) * 1000
    row["ratio_all"] = row["scan_all_s"] / row["rollup_all_s"]
    row["ratio_7d"] = row["scan_7d_s"] / row["rollup_7d_s"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scan-runs", type=int, default=1)
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--stores", default="files,redis")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tdauto-stats-") as tmp:
        work = Path(tmp)
        if "files" in args.stores:
            data = work / "files"
            rows.append(measure("files", FileStore(data), data, args))
        if "redis" in args.stores:
            from tests.support.redis_server import RedisServer

            server = RedisServer(work / "redis")
            server.start()
            try:
                store = RedisStore(server.url, prefix="bench")
                rows.append(measure("redis", store, None, args))
                store.close()
            finally:
                server.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"stats cost at {args.executions:,} executions "
        f"(median of {args.runs}; scan x{args.scan_runs})"
    )
    head = ("store", "scan all", "rollups all", "rollups 1h", "scan 7d", "rollups 7d",
            "task_stats", "record_final", "ratio all", "ratio 7d")  # fmt: skip
    print(" | ".join(head))
    for r in rows:
        print(
            f"{r['store']} | {r['scan_all_s']:.3f}s | {r['rollup_all_s'] * 1000:.2f}ms | "
            f"{r['rollup_1h_s'] * 1000:.2f}ms | {r['scan_7d_s']:.3f}s | "
            f"{r['rollup_7d_s'] * 1000:.2f}ms | {r['task_stats_s'] * 1000:.2f}ms | "
            f"{r['record_final_ms']:.2f}ms/end | x{r['ratio_all']:.0f} | x{r['ratio_7d']:.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
