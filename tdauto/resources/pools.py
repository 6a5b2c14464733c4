"""What a worker pool is: its resource class, queues, pool implementation and limits.

The pools themselves are declared in the top-level ``workers/`` package, one small module per
pool, so an operator can read (and change) a pool's shape in one place.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from tdauto.engine.executions import CONTROL_QUEUE, queue_for
from tdauto.models import ResourceClass
from tdauto.settings import Settings


@dataclass(frozen=True)
class PoolSpec:
    """One pool. ``concurrency_setting`` names the Settings field holding its size."""

    name: str
    resource_class: ResourceClass
    pool: str  # Celery pool implementation: prefork, threads, solo
    concurrency_setting: str
    max_memory_per_child_kb: int | None = None
    max_tasks_per_child: int | None = None

    def queues(self, host: str) -> list[str]:
        """The control queue, its host queue and the shared queue of its class, in the order
        a worker reads them (orchestration is short and must not wait behind work)."""
        shared = queue_for(self.resource_class)
        return [CONTROL_QUEUE, f"{shared}.{host}", shared]

    def concurrency(self, settings: Settings) -> int:
        return int(getattr(settings, self.concurrency_setting))

    def nodename(self, settings: Settings) -> str:
        return f"{self.name}@{settings.host}"

    def worker_argv(self, settings: Settings, loglevel: str = "INFO") -> list[str]:
        """Arguments for ``app.worker_main`` that start this pool."""
        argv = [
            "worker",
            "--queues",
            ",".join(self.queues(settings.host)),
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency(settings)),
            "--hostname",
            self.nodename(settings),
            "--loglevel",
            loglevel,
            "--task-events",
            "--without-gossip",
            "--without-mingle",
        ]
        if self.max_memory_per_child_kb:
            argv += ["--max-memory-per-child", str(self.max_memory_per_child_kb)]
        if self.max_tasks_per_child:
            argv += ["--max-tasks-per-child", str(self.max_tasks_per_child)]
        return argv


def load_pool(name: str) -> PoolSpec:
    """The ``POOL`` of ``workers/<name>.py``; a clear error for an unknown pool."""
    if name not in ("cpu", "memory", "storage"):
        raise ValueError(f"unknown pool {name!r}; use cpu, memory or storage")
    module = importlib.import_module(f"workers.{name}")
    pool = module.POOL
    assert isinstance(pool, PoolSpec)
    return pool
