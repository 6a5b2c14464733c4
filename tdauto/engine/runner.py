"""The body of ``tdauto.run`` and of every ``tdauto.action.<type>`` task, free of Celery.

An execution advances one action at a time: each action task records its ``ActionRun``,
then sends the next action (to that action's resource-class queue) or finalizes the run.
Driving the chain from the engine rather than with a Celery ``chain`` keeps every decision
(what ran, what failed, what comes next) in the store, where a redelivered message can see
it: an action that already succeeded is not run again, a finished execution is not reopened.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from tdauto.actions.context import ActionContext
from tdauto.engine.admission import Decision, decide
from tdauto.engine.executions import send_action
from tdauto.engine.lifecycle import complete, promote_waiting
from tdauto.engine.logs import action_logger
from tdauto.engine.runtime import Runtime
from tdauto.models import Execution, ExecutionStatus, utcnow

log = logging.getLogger(__name__)


def start_execution(rt: Runtime, execution_id: str) -> bool:
    """Admit a PENDING execution under its task's overlap policy and conflict lock, then
    move it to QUEUED and send its first action (or to WAITING, or end it SKIPPED).

    Returns True when the first action was sent. A repeated ``tdauto.run`` message finds the
    execution past PENDING and does nothing.
    """
    ex = rt.store.get_execution(execution_id)
    if ex is None:
        log.warning("tdauto.run: execution %s does not exist", execution_id)
        return False
    if ex.status is not ExecutionStatus.PENDING:
        return False
    task = rt.store.get_task(ex.task_id)
    if task is None:
        complete(rt, ex.id, ExecutionStatus.CANCELLED, "task deleted before the run started")
        return False
    decision, reason = decide(rt, ex, task)
    if decision is Decision.SKIPPED:
        complete(rt, ex.id, ExecutionStatus.SKIPPED, reason)
        log.info("skipped %s of %s: %s", ex.id, ex.task_name, reason)
        return False
    target = (
        ExecutionStatus.QUEUED if decision is Decision.ADMITTED else ExecutionStatus.WAITING
    )
    claimed = False

    def claim(e: Execution) -> None:
        # may run more than once (optimistic retry in the Redis store): decide afresh each time
        nonlocal claimed
        claimed = e.status is ExecutionStatus.PENDING
        if claimed:
            e.status = target
            e.error = reason
            if target is ExecutionStatus.QUEUED:
                for run in e.actions:
                    if run.status is ExecutionStatus.PENDING:
                        run.status = ExecutionStatus.QUEUED

    ex = rt.store.update_execution(execution_id, claim)
    if not claimed or target is ExecutionStatus.WAITING:
        if claimed:
            log.info("%s of %s waits: %s", ex.id, ex.task_name, reason)
            promote_waiting(rt)  # the blocker may have ended between admit and now
        return False
    if not ex.actions:
        complete(rt, execution_id, ExecutionStatus.SUCCEEDED)
        return True
    send_action(rt, ex, 0)
    return True


def _jsonable(output: Any) -> dict[str, Any]:
    """Handlers return dicts; anything else is wrapped, and non-JSON values become strings."""
    value = json.loads(json.dumps(output, default=str))
    return value if isinstance(value, dict) else {"result": value}


def run_action(
    rt: Runtime,
    execution_id: str,
    index: int,
    queue: str | None = None,
    cancel_event: threading.Event | None = None,
) -> ExecutionStatus | None:
    """Run action ``index`` of an execution, record it, and move the execution on.

    Returns the action's final status, or None when there was nothing to do (missing or
    finished execution, or an action that had already succeeded and was only passed on).
    """
    ex = rt.store.get_execution(execution_id)
    if ex is None:
        log.warning("action %s of execution %s: execution does not exist", index, execution_id)
        return None
    if ex.status.terminal:
        return None
    if not 0 <= index < len(ex.actions):
        log.error("execution %s has no action %s", execution_id, index)
        return None
    if ex.actions[index].status is ExecutionStatus.SUCCEEDED:
        _advance(rt, ex, index)
        return None

    host = rt.settings.host

    def begin(e: Execution) -> None:
        now = utcnow()
        r = e.actions[index]
        r.status = ExecutionStatus.RUNNING
        r.attempts += 1
        r.host = host
        r.queue = queue or r.queue
        r.started_at = now
        r.finished_at = None
        r.error = None
        if e.status in (ExecutionStatus.PENDING, ExecutionStatus.QUEUED):
            e.status = ExecutionStatus.RUNNING
        if e.started_at is None:
            e.started_at = now

    ex = rt.store.update_execution(execution_id, begin)
    run = ex.actions[index]
    logger, close_log = action_logger(rt, ex, index)
    started = time.monotonic()
    try:
        definition = rt.registry.get(run.type)
        model = definition.params.model_validate(run.params, context=rt.validation_context())
        ctx = ActionContext(
            execution_id=ex.id,
            task_id=ex.task_id,
            task_name=ex.task_name,
            index=index,
            action_type=run.type,
            attempt=run.attempts,
            settings=rt.settings,
            store=rt.store,
            logger=logger,
            cancel_event=cancel_event or threading.Event(),
        )
        logger.info("action %s (%s) attempt %s on %s", index, run.type, run.attempts, host)
        kwargs = {name: getattr(model, name) for name in type(model).model_fields}
        output = _jsonable(definition.handler(ctx, **kwargs))
    except Exception as exc:  # the handler's failure is the run's result, not a crash
        error = f"{type(exc).__name__}: {exc}"
        logger.error("action %s (%s) failed: %s", index, run.type, error, exc_info=True)
        close_log()

        def failed(e: Execution) -> None:
            r = e.actions[index]
            r.status = ExecutionStatus.FAILED
            r.error = error
            r.finished_at = utcnow()

        complete(
            rt,
            execution_id,
            ExecutionStatus.FAILED,
            f"action {index} ({run.type}) failed: {error}",
            also=failed,
        )
        return ExecutionStatus.FAILED

    logger.info("action %s (%s) succeeded in %.3fs", index, run.type, time.monotonic() - started)
    close_log()

    def succeeded(e: Execution) -> None:
        r = e.actions[index]
        r.status = ExecutionStatus.SUCCEEDED
        r.output = output
        r.finished_at = utcnow()

    ex = rt.store.update_execution(execution_id, succeeded)
    _advance(rt, ex, index)
    return ExecutionStatus.SUCCEEDED


def _advance(rt: Runtime, ex: Execution, index: int) -> None:
    """Send the next action, or finalize the execution after the last one."""
    if ex.status.terminal:
        return
    if index + 1 < len(ex.actions):
        send_action(rt, ex, index + 1)
    else:
        complete(rt, ex.id, ExecutionStatus.SUCCEEDED)
