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
    """One pool. ``concurrency_setting`` names the Settings field holding its size, and
    ``max_memory_setting`` (if any) the one holding its children's memory limit in MiB."""

    name: str
    resource_class: ResourceClass
    pool: str  # Celery pool implementation: prefork, threads, solo
    concurrency_setting: str
    max_memory_per_child_kb: int | None = None
    max_tasks_per_child: int | None = None
    max_memory_setting: str | None = None

    def queues(self, host: str) -> list[str]:
        """The control queue, its host queue and the shared queue of its class, in the order
        a worker reads them (orchestration is short and must not wait behind work)."""
        shared = queue_for(self.resource_class)
        return [CONTROL_QUEUE, f"{shared}.{host}", shared]

    def concurrency(self, settings: Settings) -> int:
        return int(getattr(settings, self.concurrency_setting))

    def max_memory_kb(self, settings: Settings) -> int | None:
        """Resident memory (KiB) above which a child is replaced after its task."""
        if self.max_memory_setting is not None:
            return int(getattr(settings, self.max_memory_setting)) * 1024
        return self.max_memory_per_child_kb

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
        max_memory_kb = self.max_memory_kb(settings)
        if max_memory_kb:
            argv += ["--max-memory-per-child", str(max_memory_kb)]
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
