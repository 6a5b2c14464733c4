"""The ``monitor`` action: a snapshot of tasks, executions in flight, queue depths and this
host.

Queue depths are read from the broker as it is laid out: the local broker's database in local
mode, kombu's Redis lists (one per queue and priority) in distributed mode. A broker
out of reach is reported in the snapshot's ``errors``, not raised.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tdauto.actions.advice import pool_field, pool_sizes
from tdauto.actions.context import ActionContext, confine
from tdauto.actions.registry import action
from tdauto.localbroker import counts, queue_depths
from tdauto.models import Execution, ExecutionStatus, ResourceClass, utcnow
from tdauto.settings import Settings

S = ExecutionStatus
IN_FLIGHT = (S.PENDING, S.WAITING, S.QUEUED, S.RUNNING, S.RETRYING)
CONTROL_QUEUE = "tdauto.control"  # the names engine.executions gives its queues
CLASS_QUEUES = tuple(f"tdauto.{c.value}" for c in ResourceClass)
KOMBU_PRIORITY_SEP = "\x06\x16"  # kombu's redis transport: "<queue>\x06\x16<priority>"

Section = Literal["tasks", "executions", "queues", "host"]
SECTIONS: tuple[Section, ...] = ("tasks", "executions", "queues", "host")


class DiskPathParams(BaseModel):
    """``disk_path``: whose disk a snapshot samples (default the data dir), confined like every
    path an action takes; shared by ``monitor`` and ``collect``."""

    disk_path: str | None = None

    @field_validator("disk_path")
    @classmethod
    def _confined(cls, value: str | None, info: ValidationInfo) -> str | None:
        settings = (info.context or {}).get("settings")
        if value is not None and settings is not None:
            confine(settings.data_path / value, settings.confined_paths, "disk_path")
        return value


class MonitorParams(DiskPathParams):
    """Params of ``monitor``.

    - ``include``: the sections of the snapshot (default all): ``tasks``, ``executions``,
      ``queues``, ``host``.
    - ``disk_path``: whose disk ``host`` reports (default the data dir; confined; a relative
      path is relative to the data dir).
    - ``in_flight_limit``: how many in-flight executions are listed (oldest first).
    """

    model_config = ConfigDict(extra="forbid")

    include: list[Section] = Field(default_factory=lambda: list(SECTIONS), min_length=1)
    in_flight_limit: int = Field(default=20, ge=0, le=1000)


def local_queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting per queue in the local broker (local mode): its rows not held by a
    consumer (``tdauto.localbroker.queue_depths``)."""
    from tdauto.app import broker_folder  # the one place that knows where the broker lives

    depths = dict.fromkeys((CONTROL_QUEUE, *CLASS_QUEUES), 0)
    depths.update(queue_depths(broker_folder(settings)))
    return depths


def redis_queue_depths(client: Any) -> tuple[dict[str, int], int]:
    """Messages waiting per ``tdauto.*`` queue (LLEN, priority lists summed) and the number
    delivered but not yet acknowledged (kombu's ``unacked`` hash)."""
    depths = dict.fromkeys((CONTROL_QUEUE, *CLASS_QUEUES), 0)
    keys = [
        k.decode() if isinstance(k, bytes) else str(k)
        for k in client.scan_iter(match="tdauto.*", count=500, _type="list")
    ]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    pipe.hlen("unacked")
    *lengths, unacked = pipe.execute()
    for key, length in zip(keys, lengths, strict=True):
        queue = key.split(KOMBU_PRIORITY_SEP, 1)[0]
        depths[queue] = depths.get(queue, 0) + int(length)
    return depths, int(unacked)


def queue_snapshot(settings: Settings) -> dict[str, Any]:
    """Queue depths from the broker of ``settings`` (local folder or Redis lists)."""
    if settings.local_mode:
        from tdauto.app import broker_folder

        found = counts(broker_folder(settings))  # delivered, not acked; and set aside
        return {"mode": "local", "depth": local_queue_depths(settings),
                "unacked": found["held"], "bad": found["bad"]}
    from tdauto.redisconn import Endpoint

    client = Endpoint.of(settings).client(socket_timeout=5, socket_connect_timeout=5)
    try:
        depths, unacked = redis_queue_depths(client)
    finally:
        client.close()
    return {"mode": "redis", "depth": depths, "unacked": unacked}


def host_snapshot(settings: Settings, disk_path: Path) -> dict[str, Any]:
    """This host's CPU, load, memory and the disk holding ``disk_path`` (psutil); shared
    with the ``collect`` action."""
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(disk_path))
    load = [round(x, 2) for x in os.getloadavg()]
    cpus = psutil.cpu_count() or 1
    return {
        "name": settings.host,
        "cpu_percent": psutil.cpu_percent(interval=0.2),
        "cpu_count": cpus,
        "load_avg": load,
        "load_per_cpu": round(load[0] / cpus, 3),
        "memory": {
            "total_bytes": memory.total,
            "available_bytes": memory.available,
            "used_percent": memory.percent,
        },
        "disk": {
            "path": str(disk_path),
            "total_bytes": disk.total,
            "free_bytes": disk.free,
            "used_percent": disk.percent,
        },
    }


@action("monitor", resource_class="cpu", params=MonitorParams, process_type="optimization")
def monitor(
    ctx: ActionContext,
    *,
    include: list[Section] | None = None,
    disk_path: str | None = None,
    in_flight_limit: int = 20,
) -> dict[str, Any]:
    """A snapshot of tasks, executions in flight, queue depths and this host."""
    sections = set(include or SECTIONS)
    now = utcnow()
    snapshot: dict[str, Any] = {"at": now.isoformat(), "host_name": ctx.settings.host}
    errors: dict[str, str] = {}
    in_flight: list[Execution] = []
    if sections & {"tasks", "executions"}:
        for status in IN_FLIGHT:
            in_flight += ctx.store.list_executions(status=status, limit=None)
    if "tasks" in sections:
        tasks = ctx.store.list_tasks()
        busy = {e.task_id for e in in_flight}
        snapshot["tasks"] = {
            "total": len(tasks),
            "enabled": sum(1 for t in tasks if t.enabled),
            "paused": sum(1 for t in tasks if not t.enabled),
            "running": sum(1 for t in tasks if t.id in busy),
            "by_type": dict(Counter(t.type.value for t in tasks)),
        }
    if "executions" in sections:
        oldest = sorted(in_flight, key=lambda e: e.created_at)[:in_flight_limit]
        snapshot["executions"] = {
            "in_flight": len(in_flight),
            "by_status": {s.value: sum(1 for e in in_flight if e.status is s) for s in IN_FLIGHT},
            "oldest": [
                {
                    "id": e.id,
                    "task_name": e.task_name,
                    "status": e.status.value,
                    "created_at": e.created_at.isoformat(),
                    "age_s": round((now - e.created_at).total_seconds(), 1),
                }
                for e in oldest
            ],
        }
    if "queues" in sections:
        try:
            snapshot["queues"] = queue_snapshot(ctx.settings)
        except Exception as exc:  # a broker out of reach is part of the picture, not a crash
            errors["queues"] = f"{type(exc).__name__}: {exc}"
        else:
            depth = snapshot["queues"]["depth"]
            snapshot["pools"] = {
                c.value: {
                    "concurrency": pool_sizes(ctx.settings)[pool_field(c)],
                    "queued": sum(
                        n
                        for q, n in depth.items()
                        if q == f"tdauto.{c.value}" or q.startswith(f"tdauto.{c.value}.")
                    ),
                }
                for c in ResourceClass
            }
    if "host" in sections:
        path = ctx.confine(ctx.data_dir / disk_path, "disk_path") if disk_path else ctx.data_dir
        snapshot["host"] = host_snapshot(ctx.settings, path)
    if errors:
        snapshot["errors"] = errors
        for section, message in errors.items():
            ctx.logger.warning("monitor: %s unavailable: %s", section, message)
    ctx.logger.info(
        "snapshot: %s in flight, queues %s",
        len(in_flight),
        snapshot.get("queues", {}).get("depth", "n/a"),
    )
    return snapshot


__all__ = [
    "CLASS_QUEUES",
    "CONTROL_QUEUE",
    "IN_FLIGHT",
    "KOMBU_PRIORITY_SEP",
    "SECTIONS",
    "MonitorParams",
    "Section",
    "host_snapshot",
    "local_queue_depths",
    "monitor",
    "queue_snapshot",
    "redis_queue_depths",
]
