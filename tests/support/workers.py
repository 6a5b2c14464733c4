"""A worker as the store sees one: its load sample, with what it advertises it can run
(``tdauto.resources.capabilities``), published without starting the worker."""

from __future__ import annotations

from typing import Any

from tdauto import AutomationSystems
from tdauto.actions.registry import REGISTRY
from tdauto.resources import capabilities

CONCURRENCY = {"cpu": 2, "memory": 1, "storage": 4}


def publish_worker(
    system: AutomationSystems,
    pool: str,
    *,
    host: str = "h1",
    actions: list[str] | None = None,
    **lists: Any,
) -> None:
    """A live sample of ``pool@host`` whose worker has ``lists`` (shell_allow=[...], ...)
    and ``actions`` (default: every action this process has)."""
    settings = system.settings.model_copy(update=lists)
    runs = capabilities.advertised(settings, REGISTRY.names() if actions is None else actions)
    sample = {"cpu_percent": 1.0, "memory_percent": 1.0, "disk_percent": 1.0,
              "concurrency": CONCURRENCY[pool], "active": 0, capabilities.KEY: runs}  # fmt: skip
    system.store.put_sample(host, pool, sample, 3600)
