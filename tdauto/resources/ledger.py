"""Admission of actions by the share of a host they reserve (design section 8).

A host has 100 of each resource (cpu, memory, storage). Before an action runs, it reserves
its task's ``resources`` on the host that took its message, atomically (the store's
``reserve``: a Lua script in Redis, a file lock in local mode). If it does not fit there, the
message is passed to a host of the same pool that has room (its ``tdauto.<class>.<host>``
queue); if it fits nowhere, the action WAITS, recorded, in the ``capacity`` timer and is sent
again when a reservation is given back (or by the reaper). Nothing is lost, and an action
that reserves 60% of a host's CPU never runs twice at once on one host.

Waiting order has ageing: a waiter's score is the time it started waiting minus
``AGE_STEP_S`` per priority level, so priority 9 goes first, but a priority-0 waiter that has
waited nine minutes longer is served before a fresh priority-9 one: nothing starves.
"""

from __future__ import annotations

import logging
from enum import Enum

from tdauto.engine.executions import queue_for, requeue_action, send_action
from tdauto.engine.runtime import Runtime
from tdauto.models import Execution, ExecutionStatus, ResourceClass, utcnow

log = logging.getLogger(__name__)
CAPACITY = "capacity"
AGE_STEP_S = 60.0
S = ExecutionStatus


class Admission(Enum):
    NOT_NEEDED = "not_needed"  # the task reserves nothing
    RESERVED = "reserved"
    MOVED = "moved"  # sent to a host with room
    WAITING = "waiting"  # fits nowhere now


def reservation_key(execution_id: str, index: int) -> str:
    return f"{execution_id}:{index}"


def _amounts(ex: Execution) -> dict[str, float]:
    return {"cpu": ex.resources.cpu, "memory": ex.resources.memory, "storage": ex.resources.storage}


def host_with_room(
    rt: Runtime, resource_class: ResourceClass, amounts: dict[str, float]
) -> str | None:
    """Another live host of the class's pool where ``amounts`` fit; the freest one."""
    hosts = {
        s["host"]
        for s in rt.store.samples()
        if s.get("pool") == resource_class.value and s["host"] != rt.settings.host
    }
    used: dict[str, dict[str, float]] = {h: {} for h in hosts}
    for held in rt.store.reservations().values():
        if held["host"] in used:
            for name in amounts:
                used[held["host"]][name] = used[held["host"]].get(name, 0.0) + held[name]
    fitting = [
        (max(used[h].get(n, 0.0) + a for n, a in amounts.items()), h)
        for h in hosts
        if all(used[h].get(n, 0.0) + a <= 100.0 + 1e-9 for n, a in amounts.items())
    ]
    return min(fitting)[1] if fitting else None


def admit_action(rt: Runtime, ex: Execution, index: int) -> Admission:
    """Reserve room for action ``index`` here, or pass it on, or make it wait."""
    amounts = _amounts(ex)
    if not any(amounts.values()):
        return Admission.NOT_NEEDED
    key = reservation_key(ex.id, index)
    if rt.store.reserve(rt.settings.host, key, amounts):
        return Admission.RESERVED
    run = ex.actions[index]
    klass = run.resource_class or ResourceClass.CPU
    target = host_with_room(rt, klass, amounts)
    if target is not None:
        log.info("%s does not fit on %s: passed to %s", key, rt.settings.host, target)
        send_action(rt, ex, index, queue=f"{queue_for(klass)}.{target}")
        return Admission.MOVED
    _wait(rt, ex.id, index)
    return Admission.WAITING


def _wait(rt: Runtime, execution_id: str, index: int) -> None:
    since = utcnow()

    def waiting(e: Execution) -> None:
        r = e.actions[index]
        if r.status in (S.QUEUED, S.PENDING):
            r.status = S.WAITING
            r.waiting_since = r.waiting_since or since

    ex = rt.store.update_execution(execution_id, waiting)
    run = ex.actions[index]
    started = (run.waiting_since or since).timestamp()
    score = started - ex.priority * AGE_STEP_S
    rt.store.timer_set(CAPACITY, reservation_key(execution_id, index), score)
    log.info("%s/%s waits for room (priority %s)", execution_id, index, ex.priority)


def release(rt: Runtime, execution_id: str, index: int) -> None:
    """Give back the action's reservation; the first waiter gets another chance."""
    if rt.store.release_reservation(reservation_key(execution_id, index)):
        wake_waiters(rt, 1)


def wake_waiters(rt: Runtime, limit: int = 1) -> int:
    """Send the best ``limit`` capacity waiters to their class's queue again."""
    woken = 0
    for member, _score in rt.store.timer_due(CAPACITY, float("inf"), limit):
        if not rt.store.timer_take(CAPACITY, member):
            continue
        execution_id, index = member.rsplit(":", 1)
        woken += requeue_action(rt, execution_id, int(index), S.WAITING)
    return woken


def release_dead(rt: Runtime) -> int:
    """Release reservations held on hosts that no longer publish samples (died or cut off)
    whose actions are no longer running; returns how many were released."""
    live = {s["host"] for s in rt.store.samples()}
    released = 0
    for key, held in rt.store.reservations().items():
        if held["host"] in live:
            continue
        execution_id, index_text = key.rsplit(":", 1)
        ex = rt.store.get_execution(execution_id)
        still_running = (
            ex is not None
            and not ex.status.terminal
            and ex.actions[int(index_text)].status is S.RUNNING
            and ex.actions[int(index_text)].host == held["host"]
        )
        if not still_running and rt.store.release_reservation(key):
            released += 1
    if released:
        wake_waiters(rt, released)
    return released
