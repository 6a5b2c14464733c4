"""Making executions from tasks, and the transitions every caller shares.

An execution snapshots the task's actions (type, params, class) when it is created, so an
edit of the task during a run cannot change a run half-way through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from tdauto.actions.registry import Registry
from tdauto.engine.runtime import Runtime
from tdauto.models import (
    ActionRun,
    ActionSpec,
    Execution,
    ExecutionStatus,
    ResourceClass,
    Resources,
    RetryPolicy,
    Task,
    Trigger,
    slot_execution_id,
    utcnow,
)
from tdauto.store.effects import Effects

CONTROL_QUEUE = "tdauto.control"
QUEUE_TIMEOUTS = "queue_timeouts"
DEADLINES = "deadlines"
RUN_TASK = "tdauto.run"
RECORD_HEADER = "tdauto_record"
"""The message header carrying the execution's JSON as its sender wrote it (``Sender``)."""
RECORD_HINT_MAX = 16 * 1024
"""Larger records are not carried (a long run's record would make every message big): the
worker reads them."""


def queue_for(resource_class: ResourceClass) -> str:
    """The shared queue of a resource class (host queues are the router's business)."""
    return f"tdauto.{resource_class.value}"


def resource_class_of(spec: ActionSpec, registry: Registry, resources: Resources) -> ResourceClass:
    """The spec's class, else the handler's default, else the task's largest resource."""
    if spec.resource_class is not None:
        return spec.resource_class
    if spec.type in registry:
        return registry.get(spec.type).resource_class
    return resources.largest_class()


def action_run(
    index: int,
    spec: ActionSpec,
    registry: Registry,
    resources: Resources,
    default_retry: RetryPolicy,
    phase: Literal["main", "recovery"] = "main",
    params: dict[str, Any] | None = None,
) -> ActionRun:
    """The record of one step, with its policies (retry, timeout, recovery) snapshotted."""
    klass = resource_class_of(spec, registry, resources)
    return ActionRun(
        index=index,
        type=spec.type,
        resource_class=klass,
        queue=queue_for(klass),
        params=params if params is not None else dict(spec.params),
        phase=phase,
        retry=spec.retry or default_retry,
        timeout_s=spec.timeout,
        on_failure=list(spec.on_failure),
    )


def new_execution(
    task: Task,
    registry: Registry,
    trigger: Trigger,
    fire_ts: float | None = None,
    params: dict[str, Any] | None = None,
    execution_id: str | None = None,
    triggered_by: dict[str, Any] | None = None,
) -> Execution:
    """A PENDING execution of ``task``; a scheduled one gets the id of its slot.

    ``params`` override action params by action type or by index (``{"cleanup": {...}}``).
    """
    overrides = params or {}
    runs = [
        action_run(
            index,
            spec,
            registry,
            task.resources,
            task.retry,
            params={
                **spec.params,
                **overrides.get(spec.type, {}),
                **overrides.get(str(index), {}),
            },
        )
        for index, spec in enumerate(task.actions)
    ]
    fields: dict[str, Any] = {
        "task_id": task.id,
        "task_name": task.name,
        "trigger": trigger,
        "params": overrides,
        "actions": runs,
        "resources": task.resources,
        "lock": task.lock,
        "priority": task.priority,
        "queue_timeout_s": task.queue_timeout,
        "recovery": list(task.on_failure),
        "retry": task.retry,
        "triggered_by": triggered_by,
    }
    if execution_id is not None:
        fields["id"] = execution_id
    if fire_ts is not None:
        fields["id"] = slot_execution_id(task.id, fire_ts)
        fields["scheduled_for"] = datetime.fromtimestamp(fire_ts, UTC)
    return Execution(**fields)


def finish(execution: Execution, status: ExecutionStatus, error: str | None = None) -> None:
    """Mutator: put ``execution`` in a terminal state (no-op if it already is in one)."""
    if execution.status.terminal:
        return
    execution.status = status
    execution.error = error
    execution.finished_at = utcnow()
    if execution.started_at is None:
        execution.started_at = execution.finished_at
    for run in execution.actions:
        if not run.status.terminal and status is not ExecutionStatus.SUCCEEDED:
            run.status = (
                ExecutionStatus.CANCELLED
                if status is ExecutionStatus.CANCELLED
                else ExecutionStatus.SKIPPED
            )


def display_name(task_name: str, action_type: str) -> str:
    """What an action's message is called in Flower and worker logs (Celery's ``shadow``):
    ``tdauto.action[Daily Backup/backup]``; the task that runs it stays
    ``tdauto.action.backup``."""
    return f"tdauto.action[{task_name}/{action_type}]"


def send_action(
    rt: Runtime, ex: Execution, index: int, queue: str | None = None, record: str | None = None
) -> None:
    """Publish action ``index`` of ``ex`` to its resource-class queue (and start its
    queue-timeout timer when the task has one). Its arguments are ``[execution id, index]``,
    so Flower shows which run each action belongs to. The message carries ``record``, else
    the record as this process last wrote it (``Sender``)."""
    run = ex.actions[index]
    if ex.queue_timeout_s is not None:
        due = time.time() + ex.queue_timeout_s
        rt.store.timer_set(QUEUE_TIMEOUTS, f"{ex.id}:{index}", due)
    # the class's shared queue, not ``run.queue``: that records where the last attempt ran
    # (a host queue), and a retry or a re-queue must be routed afresh (the router picks a host)
    shared = queue_for(run.resource_class) if run.resource_class else run.queue
    target = queue or shared or "tdauto.cpu"
    name, shadow = f"tdauto.action.{run.type}", display_name(ex.task_name, run.type)
    record = record or rt.store.written_record(ex.id)
    if record is not None and len(record) > RECORD_HINT_MAX:
        record = None
    rt.send(name, [ex.id, index], target, ex.priority, shadow=shadow, record=record)


def held(rt: Runtime, publish: Callable[[], None]) -> list[tuple[str, str]]:
    """The messages ``publish`` sends, held back (``rt.hold``) for the store to push with
    the record that announces them (``tdauto.engine.outbox``)."""
    if rt.hold is None:
        raise RuntimeError("no outbox: this runtime's store cannot push messages")
    with rt.hold() as pushes:
        publish()
    if not pushes:  # published already: the record would trail its message
        raise RuntimeError(
            "the broker published a message tdauto meant to hold back: the app's "
            "broker_transport must be tdauto.engine.outbox:Transport"
        )
    return pushes


def held_send(rt: Runtime, ex: Execution, index: int, record: str) -> list[tuple[str, str]]:
    """Action ``index``'s message as ``send_action`` makes it, carrying ``record``, held
    back for the store to push with that record."""
    return held(rt, lambda: send_action(rt, ex, index, record=record))


def send_start(rt: Runtime, ex: Execution) -> None:
    """Publish ``tdauto.run`` for the PENDING run ``ex`` (``runner.start_execution``)."""
    rt.send(RUN_TASK, [ex.id], CONTROL_QUEUE, ex.priority)


def create_and_start(rt: Runtime, ex: Execution) -> bool:
    """Record the new PENDING run ``ex`` and send its ``tdauto.run``; False, with nothing
    sent, when its id exists (a claimed slot). Where the store can push (``rt.hold``) the
    message goes with the record in one step, so a process killed in between cannot leave
    the run PENDING with no message (elsewhere ``system.requeue_pending`` re-sends it)."""
    if rt.hold is None:
        if not rt.store.create_execution(ex):
            return False
        send_start(rt, ex)
        return True
    return rt.store.create_execution(ex, lambda e, _: held(rt, lambda: send_start(rt, e)))


class Announce:
    """The message of the action a write sends: pushed by the store with that very record
    when it can (``Effects.outbox``), else published by :meth:`send` after the write.

    ``pick(e)`` names, for the record as the mutation left it, the action the write sends
    (None: none). A mutation returns :meth:`effects`; after the write, :meth:`send`."""

    def __init__(self, rt: Runtime, pick: Callable[[Execution], int | None]) -> None:
        self._rt = rt
        self._pick = pick
        self.pushed = False
        """Whether the store pushed the message with the record last written."""

    def __call__(self, ex: Execution, record: str) -> list[tuple[str, str]]:
        index = self._pick(ex)
        pushes = held_send(self._rt, ex, index, record) if index is not None else []
        self.pushed = bool(pushes)
        return pushes

    def outbox(self) -> Announce | None:
        """This, as the store's ``outbox``, when the store can push (``rt.hold``); else None."""
        return self if self._rt.hold is not None else None

    def effects(self) -> Effects | None:
        """``Effects`` carrying :meth:`outbox`, for a mutation to return (None: nothing)."""
        outbox = self.outbox()
        return Effects(outbox=outbox) if outbox is not None else None

    def send(self, ex: Execution) -> None:
        """After the write of ``ex``: publish its action unless the store pushed it."""
        index = self._pick(ex)
        if index is not None and not self.pushed:
            send_action(self._rt, ex, index)


def mark_sent(ex: Execution, index: int) -> None:
    """Mutator part: action ``index`` is about to be published."""
    run = ex.actions[index]
    run.status = ExecutionStatus.QUEUED
    run.sent_at = utcnow()
    run.next_retry_at = None


def requeue_action(
    rt: Runtime, execution_id: str, index: int, status: ExecutionStatus, lost: bool = False
) -> bool:
    """Move action ``index`` from ``status`` back to QUEUED and send it; False if it moved on."""
    moved = False
    announce = Announce(rt, lambda e: index if moved else None)

    def requeue(e: Execution) -> Effects | None:
        nonlocal moved
        r = e.actions[index]
        moved = not e.status.terminal and r.status is status
        if not moved:
            return None
        if lost:
            r.lost += 1
            r.error = f"worker on {r.host} lost (lease expired); re-queued"
            r.error_kind = "lost"
        mark_sent(e, index)
        return announce.effects()

    try:
        ex = rt.store.update_execution(execution_id, requeue)
    except LookupError:
        return False
    announce.send(ex)
    return moved
