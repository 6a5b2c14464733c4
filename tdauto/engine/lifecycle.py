"""Ending executions, and what an end sets free.

Every terminal transition goes through :func:`complete`: it records the end, releases the
execution's place (task concurrency and conflict lock), and starts the oldest WAITING
executions that now fit. Keeping this in one function is what guarantees that no run waits
for a place that was freed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from tdauto.engine.executions import (
    DEADLINES,
    Announce,
    create_and_start,
    finish,
    new_execution,
)
from tdauto.engine.runtime import Runtime
from tdauto.models import Execution, ExecutionStatus, Task, Trigger, utcnow
from tdauto.monitoring.rollups import execution_delta
from tdauto.store.effects import Effects

log = logging.getLogger(__name__)
_AFTER = uuid.UUID("0b9d7c1e-3f57-4d55-8a43-5f0c2f9e8d21")


def admit_live(rt: Runtime, ex: Execution, task: Task) -> list[Execution]:
    """Admit ``ex`` or return the live executions in its way (stale blockers released)."""
    for _ in range(5):
        blocker_ids = rt.store.admit(ex.id, task.id, task.concurrency_limit, task.lock)
        if not blocker_ids:
            return []
        live: list[Execution] = []
        for blocker_id in blocker_ids:
            blocker = rt.store.get_execution(blocker_id)
            if blocker is None or blocker.status.terminal:
                owner = blocker.task_id if blocker else task.id
                rt.store.release(blocker_id, owner, blocker.lock if blocker else task.lock)
                log.warning("released stale admission of %s", blocker_id)
            else:
                live.append(blocker)
        if live:
            return live
    return live


def complete(
    rt: Runtime,
    execution_id: str,
    status: ExecutionStatus,
    error: str | None = None,
    also: Callable[[Execution], None] | None = None,
    effects: Effects | None = None,
    only_if: Callable[[Execution], bool] | None = None,
    base: Execution | None = None,
) -> Execution:
    """Put the execution in ``status`` (no-op if it already ended), then free its place.

    ``also`` edits the record in the same write, ``effects`` are written with it; the release
    of the execution's place rides on that write too, and tells whether anything waits (so
    a run that ends with nothing waiting reads nothing more). With ``only_if``, nothing
    changes unless it holds for the current record (only ``effects`` are written). ``base``
    is passed on to ``Store.update_execution`` (the caller's last copy, not read again)."""
    ended_now = False
    applied = Effects()

    def mutate(ex: Execution) -> Effects:
        nonlocal ended_now, applied
        if only_if is not None and not only_if(ex):
            ended_now = False
            applied = Effects().merge(effects)
            return applied
        ended_now = not ex.status.terminal
        if also is not None:
            also(ex)
        finish(ex, status, error)
        applied = Effects().merge(effects)
        if ended_now:
            applied.release = (ex.task_id, ex.lock)
            applied.count_waiting = True
            applied.dependents_of = ex.task_name
            applied.rollup = execution_delta(ex)  # stats: counted once, by the end that won
        return applied

    ex = rt.store.update_execution(execution_id, mutate, base)
    if ended_now:
        if applied.waiting is None or applied.waiting > 0:
            promote_waiting(rt)
        trigger_dependents(rt, ex, applied.dependents)
    return ex


def trigger_dependents(rt: Runtime, upstream: Execution, task_ids: list[str] | None = None) -> int:
    """Start the tasks whose ``run_after`` matches how ``upstream`` ended (``task_ids``: its
    dependents, when already read); the trigger is recorded on their execution. A dependent
    execution's id derives from the upstream one, so ending the upstream twice cannot start
    a dependent twice."""
    started = 0
    if task_ids is None:
        task_ids = rt.store.dependents(upstream.task_name)
    for task_id in task_ids:
        task = rt.store.get_task(task_id)
        if task is None or not task.enabled or task.run_after is None:
            continue
        if not task.run_after.fires_on(upstream.status.value):
            continue
        dependent = new_execution(
            task,
            rt.registry,
            Trigger.EVENT,
            execution_id=uuid.uuid5(_AFTER, f"{task.id}<-{upstream.id}").hex,
            triggered_by={
                "execution_id": upstream.id,
                "task": upstream.task_name,
                "status": upstream.status.value,
            },
        )
        if create_and_start(rt, dependent):
            log.info("%s runs after %s (%s)", task.name, upstream.task_name, upstream.status)
            started += 1
    return started


def promote_waiting(rt: Runtime) -> int:
    """Start the WAITING executions that fit now, oldest first; returns how many started."""
    started = 0
    waiting = rt.store.list_executions(status=ExecutionStatus.WAITING, limit=None)
    for ex in sorted(waiting, key=lambda e: e.created_at):
        task = rt.store.get_task(ex.task_id)
        if task is None:
            complete(rt, ex.id, ExecutionStatus.CANCELLED, "task deleted while waiting")
        elif not admit_live(rt, ex, task):
            started += _leave_waiting(rt, ex.id, task.deadline)
    return started


def _leave_waiting(rt: Runtime, execution_id: str, deadline_s: float | None) -> bool:
    """An admitted WAITING execution starts like a fresh one: QUEUED, first action sent,
    its deadline counted from now."""
    moved = False
    # the first action's message goes with the write that marks it sent
    announce = Announce(rt, lambda e: 0 if moved else None)

    def to_queued(e: Execution) -> Effects | None:
        nonlocal moved
        moved = e.status is ExecutionStatus.WAITING
        if not moved:
            return None
        e.status = ExecutionStatus.QUEUED
        e.error = None
        e.actions[0].status = ExecutionStatus.QUEUED
        e.actions[0].sent_at = utcnow()
        if deadline_s is not None:
            e.deadline_at = utcnow() + timedelta(seconds=deadline_s)
        return announce.effects()

    ex = rt.store.update_execution(execution_id, to_queued)
    if not moved:
        return False
    log.info("execution %s of %s leaves WAITING", ex.id, ex.task_name)
    if ex.deadline_at is not None:
        rt.store.timer_set(DEADLINES, ex.id, ex.deadline_at.timestamp())
    announce.send(ex)
    return True
