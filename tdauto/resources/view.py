"""What ``tdauto resources`` shows: hosts and pools (live samples), reservations, routing
weights, queue depths, lent pools and the resource manager's latest decisions; as a dict for
``--json`` and as rich tables for people (``--watch`` redraws them)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tdauto.printable import cell
from tdauto.resources.broker import Broker
from tdauto.resources.ledger import CAPACITY
from tdauto.resources.router import is_stale
from tdauto.resources.weights import CLASSES, host_queue, reserved_by_host
from tdauto.store.backend import Store


def snapshot(store: Store, broker: Broker | None, decisions: int = 20) -> dict[str, Any]:
    """Everything the view shows, JSON-ready. ``broker`` None: no queue depths."""
    now = time.time()
    samples = sorted(store.samples(), key=lambda x: (x["host"], x["pool"]))
    held = store.reservations()
    record = store.weights()
    hosts = {s["host"] for s in samples}
    for klass in (record or {}).get("classes", {}).values():
        hosts.update(klass)
    queues = [f"tdauto.{c}" for c in CLASSES] + [
        host_queue(c, h) for c in CLASSES for h in sorted(hosts)
    ]
    depths: dict[str, int] | None = None
    errors: dict[str, str] = {}
    if broker is not None:
        try:
            depths = {q: n for q, n in broker.depths(["tdauto.control", *queues]).items()}
        except Exception as exc:  # a broker out of reach is part of the picture
            errors["queues"] = f"{type(exc).__name__}: {exc}"
    return {
        "at": now,
        "samples": samples,
        "reserved": reserved_by_host(held.values()),
        "reservations": held,
        "waiting": store.timer_due(CAPACITY, float("inf"), 1000),
        "weights": record,
        "weights_stale": record is None or is_stale(record, now),
        "queues": depths,
        "lent": store.spills(),
        "decisions": store.decisions(decisions),
        "errors": errors,
    }


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def render(data: dict[str, Any]) -> Group:
    """Tables for a terminal."""
    parts: list[Any] = []
    pools = Table(
        "host", "pool", "host cpu %", "mem %", "disk %", "load/core", "pool cpu %", "rss MiB",
        "active", title="pools (live samples)",
    )  # fmt: skip
    for x in data["samples"]:
        pools.add_row(
            cell(x["host"]),
            cell(x["pool"]),
            f"{x['cpu_percent']:.0f}",
            f"{x['memory_percent']:.0f}",
            f"{x['disk_percent']:.0f}",
            f"{x['load_per_core']:.2f}",
            f"{x['pool_cpu_percent']:.0f}",
            f"{x['pool_rss_bytes'] / 2**20:.0f}",
            f"{x['active']}/{x['concurrency']}",
        )
    parts.append(pools if data["samples"] else Text("no live samples: no worker is running"))
    record = data["weights"]
    if record is None:
        parts.append(Text("no routing weights yet: the resource manager has not run"))
    else:
        state = "STALE, routing to shared queues" if data["weights_stale"] else "current"
        weights = Table(
            "class", "host", "weight", "free %", "slots", "queued here", "why 0",
            title=f"routing weights (tick {record['tick']} at {_when(record['at'])}, {state})",
        )  # fmt: skip
        for klass, hosts in record.get("classes", {}).items():
            for host, e in hosts.items():
                weights.add_row(
                    klass,
                    cell(host),
                    f"{e['weight']:g}",
                    f"{e['free_percent']:g}",
                    str(e["slots"]),
                    str(e["queued_here"]),
                    cell(e.get("reason") or ""),
                )
        parts.append(weights)
    if data["queues"] is not None:
        queues = Table("queue", "waiting", title="queue depths")
        for name, n in data["queues"].items():
            if n or "." not in name.removeprefix("tdauto."):
                queues.add_row(cell(name), str(n))
        parts.append(queues)
    for name, used in sorted(data["reserved"].items()):
        shares = ", ".join(f"{k} {v:.0f}%" for k, v in used.items())
        parts.append(cell(f"reserved on {name}: {shares}"))
    parts.append(Text(f"actions waiting for room: {len(data['waiting'])}"))
    for node, loan in sorted(data["lent"].items()):
        parts.append(cell(f"lent: {node} reads {', '.join(loan['queues'])}"))
    if data["decisions"]:
        decisions = Table("time", "tick", "decision", "class", "host/node", "detail")
        decisions.title = "latest resource-manager decisions"
        for d in data["decisions"]:
            decisions.add_row(
                _when(d.get("at")),
                str(d.get("tick", "")),
                cell(d["kind"] + ("" if d.get("ok", True) else " (failed)")),
                cell(d.get("class") or ""),
                cell(d.get("node") or d.get("host") or ""),
                cell(d.get("detail") or ""),
            )
        parts.append(decisions)
    for section, error in data["errors"].items():
        parts.append(Text(cell(f"{section}: {error}").plain, style="red"))
    return Group(*parts)
