"""The body of ``tdauto.run`` and of every ``tdauto.action.<type>`` task, free of Celery.

An execution advances one action at a time: each action task records its ``ActionRun``,
then sends the next action (to that action's resource-class queue) or ends the run. Driving
the chain from the engine rather than with a Celery ``chain`` keeps every decision in the
store, where a redelivered message can see it: an action that already succeeded is not run
again, an attempt whose lease another worker holds is dropped, a finished execution is not
reopened.

A failed attempt is retried under the action's ``RetryPolicy`` (the delay is kept by the
engine in the ``retries`` timer, never as a Celery ETA); after the last retry the run's
recovery steps (the action's ``on_failure``, then the task's) are appended to the record and
run in order, and the execution ends FAILED (or TIMED_OUT) with the first error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from tdauto.actions.context import ActionContext
from tdauto.engine.admission import Decision, decide
from tdauto.engine.behind import WriteBehind
from tdauto.engine.executions import (
    DEADLINES,
    QUEUE_TIMEOUTS,
    Announce,
    action_run,
    mark_sent,
    send_action,
)
from tdauto.engine.lifecycle import complete, promote_waiting
from tdauto.engine.logs import action_logger
from tdauto.engine.runtime import Runtime
from tdauto.engine.watch import LEASES, Outcome, lease_member, run_watched
from tdauto.errors import ActionError
from tdauto.models import ActionRun, Execution, ExecutionStatus, Task, utcnow
from tdauto.redact import redact, redact_text
from tdauto.resources.ledger import Admission, admit_action, release
from tdauto.store.effects import Effects

log = logging.getLogger(__name__)
RETRIES = "retries"
S = ExecutionStatus


def start_execution(
    rt: Runtime, execution_id: str, known: Execution | None = None, task: Task | None = None
) -> bool:
    """Admit a PENDING execution under its task's overlap policy and conflict lock, then
    move it to QUEUED and send its first action (or to WAITING, or end it SKIPPED).

    Returns True when the first action was sent. A repeated ``tdauto.run`` message finds the
    execution past PENDING and does nothing.
    """
    ex = known or rt.store.get_execution(execution_id)
    if ex is None:
        log.warning("tdauto.run: execution %s does not exist", execution_id)
        return False
    if ex.status is not S.PENDING:
        return False
    task = task or rt.store.get_task(ex.task_id)
    if task is None:
        complete(rt, ex.id, S.CANCELLED, "task deleted before the run started")
        return False
    decision, reason = decide(rt, ex, task)
    if decision is Decision.SKIPPED:
        complete(rt, ex.id, S.SKIPPED, reason)
        log.info("skipped %s of %s: %s", ex.id, ex.task_name, reason)
        return False
    target = S.QUEUED if decision is Decision.ADMITTED else S.WAITING
    claimed = False
    # the first action's message goes with the write that marks it sent
    announce = Announce(rt, lambda e: 0 if claimed and target is S.QUEUED and e.actions else None)

    def claim(e: Execution) -> Effects | None:
        # may run more than once (optimistic retry in the Redis store): decide afresh each time
        nonlocal claimed
        claimed = e.status is S.PENDING
        if not claimed:
            return None
        e.status = target
        e.error = reason
        if target is not S.QUEUED:
            return None
        if task.deadline is not None:
            e.deadline_at = utcnow() + timedelta(seconds=task.deadline)
        if not e.actions:
            return None
        mark_sent(e, 0)
        return announce.effects()

    ex = rt.store.update_execution(execution_id, claim)
    if claimed and ex.deadline_at is not None:
        rt.store.timer_set(DEADLINES, ex.id, ex.deadline_at.timestamp())
    if not claimed or target is S.WAITING:
        if claimed:
            log.info("%s of %s waits: %s", ex.id, ex.task_name, reason)
            promote_waiting(rt)  # the blocker may have ended between admit and now
        return False
    if not ex.actions:
        complete(rt, execution_id, S.SUCCEEDED)
        return True
    announce.send(ex)
    return True


def start_new(rt: Runtime, ex: Execution, task: Task, version: str | None = None) -> Execution:
    """Record, admit and send a run the caller has just made (a manual or event trigger),
    from the caller's process: no ``tdauto.run`` hop.

    The record and its admission are one store step (``Store.create_admitted``): an admitted
    run is written QUEUED, its first action marked sent, and the action is published. A run
    that is not admitted at once is written PENDING and goes the way of a scheduled one
    (``start_execution``: stale blockers released, then the task's overlap policy).
    ``version``: that of the ``Store.task_definition`` the run was made from, checked by the
    store (``StaleDefinition`` when the task changed since)."""
    if not ex.actions:
        rt.store.create_execution(ex)
        start_execution(rt, ex.id, ex, task)
        return rt.store.peek_execution(ex.id) or ex

    def admitted(e: Execution) -> None:
        e.status = S.QUEUED
        mark_sent(e, 0)
        if task.deadline is not None:
            e.deadline_at = utcnow() + timedelta(seconds=task.deadline)

    # the first action's message goes with the write that admits the run
    announce = Announce(rt, lambda e: 0)
    written, blockers = rt.store.create_admitted(
        ex, task.concurrency_limit, task.lock, admitted, version, announce.outbox()
    )
    if blockers is None or blockers:  # None: the id exists, so read what is stored
        start_execution(rt, written.id, written if blockers else None, task)
        return rt.store.peek_execution(written.id) or written
    if written.deadline_at is not None:
        rt.store.timer_set(DEADLINES, written.id, written.deadline_at.timestamp())
    announce.send(written)
    return written


def _jsonable(output: Any) -> dict[str, Any]:
    """Handlers return dicts; anything else is wrapped, non-JSON values become strings, and
    secrets are hidden before the record is written (tdauto.redact)."""
    value = redact(json.loads(json.dumps(output, default=str)))
    return value if isinstance(value, dict) else {"result": value}


def error_kinds(exc: BaseException | None, timed_out: bool = False) -> list[str]:
    """The kinds a retry policy's ``retry_on`` matches: ``timeout``, an ActionError's kind,
    the exception's class name and its bases' names."""
    kinds = ["timeout"] if timed_out else []
    if isinstance(exc, ActionError):
        kinds.append(exc.kind)
    if exc is not None:
        kinds += [k.__name__ for k in type(exc).__mro__ if k not in (object, BaseException)]
    return kinds


def _trusted_peek(ex: Execution | None, index: int) -> bool:
    """A possibly stale record may decide the first steps only when it shows the action
    queued in a live run without a queue timeout (whose wait needs the current send time)
    and without a reservation to make (a duplicate delivery decided on a stale record could
    otherwise release the reservation of the worker that runs the action)."""
    return (
        ex is not None
        and 0 <= index < len(ex.actions)
        and not ex.status.terminal
        and ex.queue_timeout_s is None
        and not (ex.resources.cpu or ex.resources.memory or ex.resources.storage)
        and ex.actions[index].status in (S.PENDING, S.QUEUED)
    )


def _skip_reason(rt: Runtime, ex: Execution, run: ActionRun) -> str | None:
    """Why this delivery must not run the action now, or None to run it."""
    if run.status is S.RUNNING:
        expires = rt.store.timer_get(LEASES, lease_member(ex.id, run.index, run.attempts))
        if expires is not None and expires > time.time():
            return "another worker holds its lease"
    if run.status is S.RETRYING:
        return "its retry is not due yet"
    return None


def run_action(
    rt: Runtime,
    execution_id: str,
    index: int,
    queue: str | None = None,
    fresh: bool = False,
    hint: str | None = None,
) -> ExecutionStatus | None:
    """Run action ``index`` of an execution, record it, and move the execution on.

    Returns the attempt's status, or None when there was nothing to do (missing or finished
    execution, a duplicate delivery, an action that had already succeeded).

    A first look uses the record as this process last wrote it (often it queued this very
    action itself: no read needed), or as the sender wrote it (``hint``, carried by the
    message). Only a record that shows the action queued, as a fresh delivery expects, is
    trusted that way, and a claim that fails on it is tried once more on the stored record
    (``fresh``), so a stale copy can cost a read but never a delivery.
    """
    if fresh:
        ex = rt.store.get_execution(execution_id)
    else:
        ex = rt.store.peek_execution(execution_id, hint)
    if not fresh and not _trusted_peek(ex, index):
        return run_action(rt, execution_id, index, queue, fresh=True)
    if ex is None or not 0 <= index < len(ex.actions):
        log.warning("no action %s of execution %s", index, execution_id)
        return None
    if ex.status.terminal:
        return None
    run = ex.actions[index]
    if run.status is S.SUCCEEDED:
        _advance(rt, ex, index)
        return None
    if run.status.terminal:
        return None
    why = _skip_reason(rt, ex, run)
    if why is not None:
        log.info("dropping a delivery of %s/%s: %s", execution_id, index, why)
        return None
    now = utcnow()
    if ex.deadline_at is not None and now >= ex.deadline_at:
        complete(rt, ex.id, S.TIMED_OUT, "the run's deadline passed before this action")
        return S.TIMED_OUT
    waited = (now - run.sent_at).total_seconds() if run.sent_at else 0.0
    if ex.queue_timeout_s is not None and waited > ex.queue_timeout_s:
        reason = f"waited {waited:.1f}s in queue, over queue_timeout={ex.queue_timeout_s:g}s"
        _final_failure(rt, ex.id, index, S.TIMED_OUT, reason, "queue_timeout")
        return S.TIMED_OUT

    admission = admit_action(rt, ex, index)
    if admission in (Admission.MOVED, Admission.WAITING):
        return None
    reserved = admission is Admission.RESERVED
    host = rt.settings.host
    expected_attempts = run.attempts
    claimed = False

    def begin(e: Execution) -> Effects | None:
        # two deliveries of one action: only the one that saw the current attempt count wins
        nonlocal claimed
        r = e.actions[index]
        claimed = r.attempts == expected_attempts and r.status in (S.PENDING, S.QUEUED, S.RUNNING)
        if not claimed or e.status.terminal:
            claimed = False
            return None
        r.status = S.RUNNING
        r.attempts += 1
        r.host = host
        r.queue = queue or r.queue
        r.started_at = utcnow()
        r.finished_at = None
        if e.status in (S.PENDING, S.QUEUED):
            e.status = S.RUNNING
        if e.started_at is None:
            e.started_at = r.started_at
        # the attempt's lease is set by the write that starts it
        lease = (LEASES, lease_member(e.id, index, r.attempts), time.time() + lease_ttl_s)
        effects = Effects(set_timers=[lease])
        if e.queue_timeout_s is not None:
            effects.take_timers.append((QUEUE_TIMEOUTS, f"{e.id}:{index}"))
        return effects

    lease_ttl_s = rt.settings.lease_ttl_s
    ex = rt.store.update_execution(execution_id, begin, base=ex)  # ex is not read again
    if not claimed:
        if reserved:
            release(rt, execution_id, index)
        return None if fresh else run_action(rt, execution_id, index, queue, fresh=True)
    run = ex.actions[index]
    try:
        return _attempt(rt, ex, run, behind=None if reserved else rt.behind)
    finally:
        if reserved:
            release(rt, execution_id, index)


def _attempt(
    rt: Runtime, ex: Execution, run: ActionRun, behind: WriteBehind | None = None
) -> ExecutionStatus | None:
    logger, close_log = action_logger(rt, ex, run.index)
    lease = (LEASES, lease_member(ex.id, run.index, run.attempts))
    started = time.monotonic()
    deadline_ts = ex.deadline_at.timestamp() if ex.deadline_at else None
    try:
        definition = rt.registry.get(run.type)
        model = definition.params.model_validate(run.params, context=rt.validation_context())
    except Exception as exc:  # params that no longer validate fail the action, no retry
        close_log(True)
        rt.store.timer_take(*lease)
        error = redact_text(f"invalid params: {exc}")  # pydantic quotes the input
        _final_failure(rt, ex.id, run.index, S.FAILED, error, "invalid")
        return S.FAILED
    ctx = ActionContext(
        execution_id=ex.id,
        task_id=ex.task_id,
        task_name=ex.task_name,
        index=run.index,
        action_type=run.type,
        attempt=run.attempts,
        settings=rt.settings,
        store=rt.store,
        logger=logger,
        deadline_ts=deadline_ts,
    )
    limits = [t for t in (run.timeout_s, ctx.remaining_s()) if t is not None]
    log.debug("%s/%s %s attempt %s", ex.id, run.index, run.type, run.attempts)
    kwargs = {name: getattr(model, name) for name in type(model).model_fields}
    result = run_watched(rt, definition, ctx, kwargs, min(limits) if limits else None)
    elapsed = time.monotonic() - started
    if result.outcome is Outcome.OK:
        try:
            output = _jsonable(result.output)
        except (TypeError, ValueError) as exc:
            result.error, result.outcome = exc, Outcome.ERROR
        else:
            log.debug("%s/%s %s succeeded in %.3fs", ex.id, run.index, run.type, elapsed)
            # the lease's end and the last log lines are written with the success
            effects = Effects(take_timers=[lease], log=close_log(False))
            if behind is None:
                _succeed(rt, ex, run.index, run.attempts, output, effects)
            else:
                end = partial(_succeed, rt, ex, run.index, run.attempts, output, effects)
                behind.submit(end, f"{ex.id}/{run.index}")
            return S.SUCCEEDED
    rt.store.timer_take(*lease)
    if result.outcome in (Outcome.CANCELLED, Outcome.LOST):
        logger.warning("%s stopped after %.1fs: %s", run.type, elapsed, result.outcome.value)
        close_log(True)
        if result.outcome is Outcome.CANCELLED:
            _mark_stopped(rt, ex.id, run.index, run.attempts)
        return None
    timed_out = result.outcome is Outcome.TIMEOUT or (
        isinstance(result.error, ActionError) and result.error.kind == "timeout"
    )
    if result.outcome is Outcome.TIMEOUT:
        error = f"timed out after {elapsed:.1f}s (timeout {min(limits):g}s)"
    else:
        error = redact_text(f"{type(result.error).__name__}: {result.error}")
    logger.error("%s failed: %s", run.type, error, exc_info=result.error)
    close_log(True)
    kinds = error_kinds(result.error, timed_out)
    _fail_attempt(rt, ex.id, run.index, error, kinds, timed_out, run.attempts)
    return S.TIMED_OUT if timed_out else S.FAILED


def _owns(index: int, attempt: int | None) -> Callable[[Execution], bool]:
    """Whether a record still shows ``attempt`` running action ``index``: an attempt that
    outlived its lease (the reaper re-queued the action, or a newer attempt started) must not
    write its end over the newer state. ``None``: no attempt to check (engine-made ends)."""

    def owns(e: Execution) -> bool:
        r = e.actions[index]
        return attempt is None or (r.attempts == attempt and r.status is S.RUNNING)

    return owns


def _succeed(
    rt: Runtime, ex: Execution, index: int, attempt: int, output: dict[str, Any], effects: Effects
) -> None:
    """Record the success (with ``effects``); the last step's success ends the run in the
    same write. A success the record no longer expects (``_owns``) is dropped."""
    owns = _owns(index, attempt)
    wrote = False

    def succeeded(e: Execution) -> None:
        r = e.actions[index]
        r.status = S.SUCCEEDED
        r.output = output
        r.error = None
        r.finished_at = utcnow()
        nxt = _next_index(e, index)
        if nxt is not None and not e.status.terminal:
            mark_sent(e, nxt)

    if _next_index(ex, index) is None:
        outcome = ex.outcome or S.SUCCEEDED
        error = ex.error if ex.outcome else None
        complete(rt, ex.id, outcome, error, succeeded, effects, only_if=owns, base=ex)
        return

    def succeeded_with(e: Execution) -> Effects:
        nonlocal wrote
        wrote = owns(e)
        if wrote:
            succeeded(e)
        return effects

    # the next action's message goes with the write that marks it sent
    announce = Announce(
        rt, lambda e: _next_index(e, index) if wrote and not e.status.terminal else None
    )
    effects.outbox = announce.outbox()
    done = rt.store.update_execution(ex.id, succeeded_with, base=ex)
    if wrote and not announce.pushed:
        _advance(rt, done, index)
    elif not wrote:
        log.warning("%s/%s: attempt %s ended after losing its lease", ex.id, index, attempt)


def _mark_stopped(rt: Runtime, execution_id: str, index: int, attempt: int) -> None:
    owns = _owns(index, attempt)

    def stopped(e: Execution) -> None:
        r = e.actions[index]
        if not r.status.terminal and owns(e):
            r.status = e.status if e.status.terminal else S.CANCELLED
            r.finished_at = utcnow()

    rt.store.update_execution(execution_id, stopped)


def _fail_attempt(
    rt: Runtime,
    execution_id: str,
    index: int,
    error: str,
    kinds: list[str],
    timed_out: bool,
    attempt: int,
) -> None:
    """Retry under the action's policy, or fail it for good (unless a newer attempt or a
    re-queue owns the action by now: then this attempt's end is dropped)."""
    ex = rt.store.get_execution(execution_id)
    if ex is None or ex.status.terminal or not _owns(index, attempt)(ex):
        return
    run = ex.actions[index]
    past_deadline = ex.deadline_at is not None and utcnow() >= ex.deadline_at
    if run.attempts <= run.retry.max and run.retry.retries(kinds) and not past_deadline:
        delay_s = run.retry.delay_s(run.attempts)
        due = time.time() + delay_s

        def retrying(e: Execution) -> None:
            r = e.actions[index]
            if not _owns(index, attempt)(e):
                return
            r.status = S.RETRYING
            r.error = error
            r.error_kind = kinds[0] if kinds else None
            r.finished_at = utcnow()
            r.next_retry_at = utcnow() + timedelta(seconds=delay_s)

        rt.store.update_execution(execution_id, retrying)
        rt.store.timer_set(RETRIES, f"{execution_id}:{index}", due)
        log.info("%s/%s retry %d in %.1fs", execution_id, index, run.attempts, delay_s)
        return
    status = S.TIMED_OUT if timed_out or past_deadline else S.FAILED
    _final_failure(rt, execution_id, index, status, error, kinds[0] if kinds else None, attempt)


def _final_failure(
    rt: Runtime,
    execution_id: str,
    index: int,
    status: ExecutionStatus,
    error: str,
    kind: str | None,
    attempt: int | None = None,
) -> None:
    """The action failed for good: record it; a main action's failure appends the recovery
    steps and skips the remaining main actions; the run ends after the last recovery step.
    ``attempt``: the attempt that failed, whose end is dropped if it no longer owns the
    action (None for ends the engine decides: queue timeout, lost worker, bad params)."""
    sends: int | None = None
    applied = True
    owns = _owns(index, attempt)
    # the step this write sends (the first recovery step, or the next one after a recovery
    # step failed): its message goes with the write that marks it sent
    announce = Announce(rt, lambda e: sends)

    def failed(e: Execution) -> Effects | None:
        nonlocal sends, applied
        sends = None  # decided afresh on each attempt of the write
        r = e.actions[index]
        applied = owns(e)
        if not applied:
            return None
        r.status = status
        r.error = error
        r.error_kind = kind
        r.finished_at = utcnow()
        if r.phase != "main" or e.outcome is not None:
            sends = _next_index(e, index)
            if sends is None or e.status.terminal:
                sends = None
                return None
            mark_sent(e, sends)
            return announce.effects()
        e.outcome = status
        e.error = f"action {index} ({r.type}) failed: {error}"
        for later in e.actions[index + 1 :]:
            if later.phase == "main" and not later.status.terminal:
                later.status = S.SKIPPED
        steps = [*r.on_failure, *e.recovery]
        base = len(e.actions)
        for offset, spec in enumerate(steps):
            e.actions.append(
                action_run(base + offset, spec, rt.registry, e.resources, e.retry, "recovery")
            )
        if not steps:
            return None
        mark_sent(e, base)
        sends = base
        return announce.effects()

    ex = rt.store.update_execution(execution_id, failed)
    if ex.status.terminal or not applied:
        return
    if sends is not None:
        announce.send(ex)
        return
    _advance(rt, ex, index)


def _next_index(ex: Execution, index: int) -> int | None:
    """The next step after ``index``: the next main action while no main action failed,
    else the next recovery step."""
    phase = ex.actions[index].phase
    for later in ex.actions[index + 1 :]:
        if later.phase == phase and not later.status.terminal:
            return later.index
    return None


def _advance(rt: Runtime, ex: Execution, index: int) -> None:
    """Send the next step, or end the execution after the last one."""
    if ex.status.terminal:
        return
    nxt = _next_index(ex, index)
    if nxt is not None:
        send_action(rt, ex, nxt)
    elif ex.outcome is not None:
        complete(rt, ex.id, ex.outcome, ex.error)
    else:
        complete(rt, ex.id, S.SUCCEEDED)
