"""The resource manager: one tick reads the load samples, queue depths and reservations,
rewrites the routing weights, lends idle pools to a backlogged class (and takes them back),
gives back what dead hosts held, and records every decision.

Beat runs a tick every ``TDAUTO_MANAGER_INTERVAL_S`` (``beat_schedule.py``, task
``tdauto.system.balance`` on ``tdauto.control``); the ``balance`` action runs one at once. Two
ticks never overlap: a tick takes a turn in the store's ``manager`` timer first.

What one tick decides, in order:

1. **Weights** per class and host (``weights.py``). A host's weight crossing to or from 0, a
   host appearing, and a host forgotten are recorded as ``weight`` decisions.
2. **Dead hosts**: reservations held on hosts without a live sample whose actions no longer
   run there are released (``ledger.release_dead``; the best waiters are sent again), and
   messages left in a dead host's queue of a class are moved back to the shared queue of the
   class (``rescue``), so nothing waits for a host that is gone.
3. **Lending**: a class whose queues hold ``TDAUTO_SPILL_BACKLOG`` or more messages gets idle
   pools of other classes (nothing running, nothing waiting in their own class) as extra
   consumers of its shared queue and of their host's queue of the class (``add_consumer``),
   until their slots cover the backlog. A lent pool is taken back (``cancel_consumer``) when
   the backlog has drained, when its own class has work waiting, or forgotten when it died.

Decisions go to the store (``Store.decisions(limit)``, newest first, bounded) for
``tdauto resources`` and the metrics exporter, and to the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tdauto.engine.runtime import Runtime
from tdauto.monitoring.rollups import count_rebalance_decisions
from tdauto.resources.broker import Broker
from tdauto.resources.ledger import release_dead
from tdauto.resources.weights import CLASSES, compute_weights, host_queue, weights_record

log = logging.getLogger(__name__)
TURN = ("manager", "tick")
TURN_TTL_S = 60.0
DECISIONS_KEEP = 1000
BALANCE_TASK = "tdauto.system.balance"


def node_name(pool: str, host: str) -> str:
    """The Celery node name of a pool's worker (``PoolSpec.nodename``)."""
    return f"{pool}@{host}"


def take_turn(rt: Runtime, now: float) -> bool:
    """The right to run a tick (no other tick running); an abandoned turn lapses."""
    name, member = TURN
    if rt.store.timer_set(name, member, now + TURN_TTL_S, only="new"):
        return True
    due = rt.store.timer_get(name, member)
    if due is not None and due > now:
        return False
    return rt.store.timer_take(name, member) and rt.store.timer_set(
        name, member, now + TURN_TTL_S, only="new"
    )


def tick(rt: Runtime, broker: Broker, wait_s: float = 0.0) -> dict[str, Any]:
    """Run one tick (waiting up to ``wait_s`` for a running one to end); returns the tick's
    number, weights and decisions, or ``{"skipped": why}``."""
    deadline = time.monotonic() + wait_s
    while not take_turn(rt, time.time()):
        if time.monotonic() >= deadline:
            return {"skipped": "another resource-manager tick is running"}
        time.sleep(0.2)
    try:
        return _tick(rt, broker, time.time())
    finally:
        rt.store.timer_take(*TURN)


def _tick(rt: Runtime, broker: Broker, now: float) -> dict[str, Any]:
    store, settings = rt.store, rt.settings
    samples = store.samples()
    held = store.reservations()
    previous = store.weights()
    known: dict[str, set[str]] = {c: set() for c in CLASSES}
    for sample in samples:
        if sample.get("pool") in known:
            known[sample["pool"]].add(sample["host"])
    for klass, hosts in (previous or {}).get("classes", {}).items():
        known.setdefault(klass, set()).update(hosts)
    queues = [f"tdauto.{c}" for c in CLASSES]
    queues += [host_queue(c, h) for c in CLASSES for h in sorted(known[c])]
    depths = broker.depths(queues)
    table = compute_weights(
        samples, held.values(), depths, previous, now, settings.high_water_percent
    )
    number = int((previous or {}).get("tick", 0)) + 1
    decisions = weight_changes(previous, table)
    released = release_dead(rt)
    if released:
        decisions.append({"kind": "release", "count": released, "detail": "hosts without samples"})
    decisions += rescue(broker, table, depths)
    backlog = class_backlogs(table, depths)
    decisions += lend_pools(rt, broker, samples, backlog, now)
    record = weights_record(table, number, now, settings.manager_interval_s)
    record["backlog"] = backlog
    store.put_weights(record)
    for decision in decisions:
        decision.update(at=now, tick=number)
        log.info("resource manager: %s", decision)
    store.add_decisions(decisions, DECISIONS_KEEP)
    count_rebalance_decisions(store, decisions)  # the /metrics counters
    return {
        "tick": number,
        "weights": {c: {h: e["weight"] for h, e in hosts.items()} for c, hosts in table.items()},
        "backlog": backlog,
        "decisions": decisions,
    }


def weight_changes(
    previous: dict[str, Any] | None, table: dict[str, dict[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """``weight`` decisions: a host's weight crossing 0 either way, appearing or forgotten."""
    before = (previous or {}).get("classes", {})
    out: list[dict[str, Any]] = []
    for klass in CLASSES:
        old_hosts, new_hosts = before.get(klass, {}), table.get(klass, {})
        for host in sorted(set(old_hosts) | set(new_hosts)):
            old = old_hosts.get(host)
            new = new_hosts.get(host)
            w_old = None if old is None else float(old["weight"])
            w_new = None if new is None else float(new["weight"])
            if w_old is not None and w_new is not None and (w_old > 0) == (w_new > 0):
                continue
            out.append(
                {
                    "kind": "weight",
                    "class": klass,
                    "host": host,
                    "weight_from": w_old,
                    "weight_to": w_new,
                    "detail": "forgotten" if new is None else new.get("reason") or "has room",
                }
            )
    return out


def class_backlogs(
    table: dict[str, dict[str, dict[str, Any]]], depths: dict[str, int]
) -> dict[str, int]:
    """Messages waiting per class: its shared queue and every known host's queue."""
    return {
        c: int(depths.get(f"tdauto.{c}", 0))
        + sum(int(depths.get(host_queue(c, h), 0)) for h in table.get(c, {}))
        for c in CLASSES
    }


def rescue(
    broker: Broker, table: dict[str, dict[str, dict[str, Any]]], depths: dict[str, int]
) -> list[dict[str, Any]]:
    """Move what waits in the host queue of a host without a live pool of the class back to
    the class's shared queue."""
    out: list[dict[str, Any]] = []
    for klass, hosts in table.items():
        for host, entry in hosts.items():
            queue = host_queue(klass, host)
            if entry.get("live") or not depths.get(queue):
                continue
            moved = broker.move_messages(queue, f"tdauto.{klass}")
            if moved:
                out.append(
                    {
                        "kind": "rescue",
                        "class": klass,
                        "host": host,
                        "queues": [queue],
                        "count": moved,
                        "detail": f"moved to tdauto.{klass}: {entry.get('reason')}",
                    }
                )
    return out


def lend_pools(
    rt: Runtime,
    broker: Broker,
    samples: list[dict[str, Any]],
    backlog: dict[str, int],
    now: float,
) -> list[dict[str, Any]]:
    """Take back pools whose loan is over, then lend idle pools to backlogged classes."""
    store, threshold = rt.store, rt.settings.spill_backlog
    live = {node_name(s["pool"], s["host"]): s for s in samples if s.get("pool") in CLASSES}
    spills = store.spills()
    out: list[dict[str, Any]] = []
    for node, loan in sorted(spills.items()):
        klass, sample = loan["class"], live.get(node)
        if sample is None:
            why = "its worker is gone"
        elif backlog.get(klass, 0) == 0:
            why = f"the {klass} backlog drained"
        elif backlog.get(sample["pool"], 0) > 0:
            why = f"its own class {sample['pool']} has {backlog[sample['pool']]} waiting"
        else:
            continue
        ok = sample is None or all([broker.cancel_consumer(node, q) for q in loan["queues"]])
        store.set_spill(node, None)
        del spills[node]
        out.append(_loan_decision("cancel_consumer", node, loan, ok, why))
    for klass in sorted(CLASSES, key=lambda c: -backlog.get(c, 0)):
        waiting = backlog.get(klass, 0)
        if waiting < threshold:
            continue
        need = waiting - sum(
            int(live[n].get("concurrency", 1))
            for n, loan in spills.items()
            if loan["class"] == klass and n in live
        )
        idle = [
            s
            for node, s in live.items()
            if s["pool"] != klass
            and node not in spills
            and int(s.get("active", 0)) == 0
            and backlog.get(s["pool"], 0) == 0
        ]
        idle.sort(key=lambda s: (-int(s.get("concurrency", 1)), s["host"], s["pool"]))
        for sample in idle:
            if need <= 0:
                break
            node = node_name(sample["pool"], sample["host"])
            loan = {
                "class": klass,
                "host": sample["host"],
                "pool": sample["pool"],
                "queues": [f"tdauto.{klass}", host_queue(klass, sample["host"])],
                "since": now,
            }
            ok = all([broker.add_consumer(node, q) for q in loan["queues"]])
            why = f"{waiting} waiting in {klass}; {node} idle"
            out.append(_loan_decision("add_consumer", node, loan, ok, why))
            if ok:
                store.set_spill(node, loan)
                spills[node] = loan
                need -= int(sample.get("concurrency", 1))
            else:  # half-added: take back what it did accept
                for queue in loan["queues"]:
                    broker.cancel_consumer(node, queue)
    return out


def _loan_decision(
    kind: str, node: str, loan: dict[str, Any], ok: bool, why: str
) -> dict[str, Any]:
    return {
        "kind": kind,
        "class": loan["class"],
        "host": loan["host"],
        "node": node,
        "queues": list(loan["queues"]),
        "ok": ok,
        "detail": why,
    }
