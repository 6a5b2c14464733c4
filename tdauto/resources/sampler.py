"""Load samples: each worker publishes its host's and its own pool's load, every few seconds,
with a short TTL, so the resource manager (and ``tdauto resources``) see who is alive and how
busy; a host whose samples expired is gone.

Host figures: CPU percent, memory percent, disk percent of the data dir's file system, the
1-minute load average per core. Pool figures: the worker's process tree's CPU percent and
RSS, its concurrency and how many tasks it is running now. And what the worker can run
(``capabilities.advertised``: its actions and allow-lists), for the CLI's warnings.

A sample also goes out as soon as the number of running tasks changes (checked every
``WATCH_S``, at most one extra sample per ``MIN_GAP_S``), so the resource manager sees a pool
fill up or drain within a fraction of a second instead of up to ``INTERVAL_S`` later; an
idle or steadily busy worker still writes one sample per ``INTERVAL_S``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from tdauto.resources import capabilities
from tdauto.settings import Settings
from tdauto.store.backend import Store

log = logging.getLogger(__name__)
INTERVAL_S = 3.0
TTL_S = 10.0
WATCH_S = 0.25
MIN_GAP_S = 0.5


def take_sample(
    pool: str, concurrency: int, active: int, data_dir: str, proc: psutil.Process
) -> dict[str, Any]:
    """One sample (psutil); ``proc`` is the worker's main process."""
    tree = [proc, *proc.children(recursive=True)]
    cpu = rss = 0.0
    for p in tree:
        try:
            cpu += p.cpu_percent(None)
            rss += p.memory_info().rss
        except psutil.Error:
            continue
    cores = psutil.cpu_count() or 1
    return {
        "cpu_percent": psutil.cpu_percent(None),
        "memory_percent": psutil.virtual_memory().percent,
        "disk_percent": psutil.disk_usage(data_dir).percent,
        "load_per_core": round(os.getloadavg()[0] / cores, 3),
        "cores": cores,
        "pool_cpu_percent": round(cpu, 1),
        "pool_rss_bytes": int(rss),
        "concurrency": concurrency,
        "active": active,
    }


class Sampler(threading.Thread):
    """Publishes a sample every ``INTERVAL_S`` until stopped; store errors are logged and the
    next round tries again (a sampler must never take its worker down)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        pool: str,
        concurrency: int,
        active: Callable[[], int],
        runs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name=f"tdauto-sampler-{pool}", daemon=True)
        self._store = store
        self._settings = settings
        self._pool = pool
        self._concurrency = concurrency
        self._active = active
        self._runs = runs  # what this worker can run (capabilities.advertised), in each sample
        self._stop_event = threading.Event()

    def run(self) -> None:
        proc = psutil.Process()
        data_dir = str(self._settings.data_path)
        os.makedirs(data_dir, exist_ok=True)
        last_at = float("-inf")
        last_active: int | None = None
        while not self._stop_event.is_set():
            now = time.monotonic()
            active = self._active()
            changed = active != last_active and now - last_at >= MIN_GAP_S
            if changed or now - last_at >= INTERVAL_S:
                try:
                    sample = take_sample(self._pool, self._concurrency, active, data_dir, proc)
                    if self._runs is not None:
                        sample[capabilities.KEY] = self._runs
                    self._store.put_sample(self._settings.host, self._pool, sample, TTL_S)
                except Exception:
                    log.warning("could not publish the %s pool's sample", self._pool, exc_info=True)
                last_at, last_active = now, active
            self._stop_event.wait(WATCH_S)

    def stop(self) -> None:
        self._stop_event.set()
