"""Routing weights: how much work of each resource class a host can take now (pure).

The resource manager computes them every tick from the live load samples, the ledger's
reservations and the queue depths; the router reads them to pick a host queue. For class
``c`` (cpu, memory or storage) and a host ``h`` whose pool of class ``c`` published a sample:

- ``used`` is the larger of what the ledger holds reserved on ``h`` for resource ``c`` and what
  the sample measured (host CPU percent, memory percent, disk percent of the data dir);
- ``free_percent = 100 - used``; at or above the high-water mark (``used >= high_water``) the
  weight is 0, whatever else is free;
- ``slots`` are the pool's worker slots not busy and not already spoken for by messages
  waiting in ``h``'s own queue: ``concurrency - active - depth(tdauto.c.h)``; no slot, weight 0;
- ``weight = free_percent * slots``: an idle host with two slots weighs 200, one with one slot
  and 60% reserved weighs 40.

A host seen in the previous weights whose sample expired (its workers died or were cut off)
keeps an entry with weight 0 and the reason, for ``FORGET_S``, so ``tdauto resources`` and the
decisions say what happened to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tdauto.models import ResourceClass

CLASSES = tuple(c.value for c in ResourceClass)
MEASURED = {"cpu": "cpu_percent", "memory": "memory_percent", "storage": "disk_percent"}
FORGET_S = 600.0


def host_queue(resource_class: str, host: str) -> str:
    """The queue of class ``resource_class`` that only ``host``'s workers read."""
    return f"tdauto.{resource_class}.{host}"


def reserved_by_host(reservations: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Percent reserved per host and resource, summed from the ledger's reservations."""
    used: dict[str, dict[str, float]] = {}
    for held in reservations:
        host = used.setdefault(held["host"], dict.fromkeys(CLASSES, 0.0))
        for name in CLASSES:
            host[name] += float(held.get(name, 0.0))
    return used


def host_weight(
    resource_class: str,
    sample: dict[str, Any],
    reserved: dict[str, float],
    queued_here: int,
    high_water: float,
) -> dict[str, Any]:
    """The weight of one live pool's host for its class, with the figures behind it."""
    measured = float(sample.get(MEASURED[resource_class], 0.0))
    held = float(reserved.get(resource_class, 0.0))
    used = max(measured, held)
    concurrency = int(sample.get("concurrency", 1))
    slots = concurrency - int(sample.get("active", 0)) - queued_here
    entry: dict[str, Any] = {
        "weight": 0.0,
        "free_percent": round(max(0.0, 100.0 - used), 1),
        "slots": max(0, slots),
        "reserved_percent": round(held, 1),
        "measured_percent": round(measured, 1),
        "queued_here": queued_here,
        "live": True,
        "reason": None,
    }
    if used >= high_water:
        source = "reserved" if held >= measured else "measured"
        entry["reason"] = f"{resource_class} {used:.0f}% {source} >= high-water {high_water:g}%"
    elif slots <= 0:
        entry["reason"] = (
            f"no free slot: {sample.get('active', 0)}/{concurrency} busy, {queued_here} queued here"
        )
    else:
        entry["weight"] = round(entry["free_percent"] * slots, 1)
    return entry


def compute_weights(
    samples: list[dict[str, Any]],
    reservations: Iterable[dict[str, Any]],
    depths: dict[str, int],
    previous: dict[str, Any] | None,
    now: float,
    high_water: float,
) -> dict[str, dict[str, dict[str, Any]]]:
    """class -> host -> weight entry (see the module docstring), every class present."""
    used = reserved_by_host(reservations)
    before = (previous or {}).get("classes", {})
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for klass in CLASSES:
        hosts: dict[str, dict[str, Any]] = {}
        for sample in samples:
            if sample.get("pool") != klass:
                continue
            host = sample["host"]
            queued = int(depths.get(host_queue(klass, host), 0))
            entry = host_weight(klass, sample, used.get(host, {}), queued, high_water)
            entry["seen_at"] = now
            hosts[host] = entry
        for host, old in before.get(klass, {}).items():
            seen_at = float(old.get("seen_at", 0.0))
            if host in hosts or now - seen_at > FORGET_S:
                continue
            hosts[host] = {
                "weight": 0.0,
                "free_percent": 0.0,
                "slots": 0,
                "reserved_percent": round(used.get(host, {}).get(klass, 0.0), 1),
                "measured_percent": None,
                "queued_here": int(depths.get(host_queue(klass, host), 0)),
                "live": False,
                "reason": f"no fresh load sample (last seen {now - seen_at:.0f}s ago)",
                "seen_at": seen_at,
            }
        table[klass] = dict(sorted(hosts.items()))
    return table


def weights_record(
    table: dict[str, dict[str, dict[str, Any]]], tick: int, now: float, interval_s: float
) -> dict[str, Any]:
    """What the store keeps and the router reads: the table, when, and the tick's period (the
    router calls the record stale after a few periods without a new one)."""
    return {"tick": tick, "at": now, "interval_s": interval_s, "classes": table}
