"""``StoreScheduler``: a Celery beat scheduler that fires the tasks kept in tdauto's store.

Use it as ``tdauto beat``, inside ``tdauto up`` or ``AutomationSystems.start()``, or as
``celery beat -S tdauto.scheduler:StoreScheduler`` with an app from ``tdauto.app.make_app``.

Each tick pops what is due from the store's due index (a Redis sorted set, or an index file
in local mode), so its cost grows with what is due, never with the number of tasks. A slot
``task_id@fire_ts`` is claimed by creating its execution, whose id derives from the slot:
creation succeeds once, so two beats or a restarted beat cannot fire a slot twice. The next
fire time is written back to the store, so a restart neither re-fires nor forgets.

Order of a dispatch: claim (create the PENDING execution), send ``tdauto.run``, then move the
task's next fire time. A beat that dies after the claim but before moving the next fire time
finds the slot claimed on restart; if its execution is still PENDING it re-sends it
(``tdauto.run`` is idempotent), otherwise it only reschedules.

The static entries of ``beat_schedule.py`` (system jobs) run through Celery's own in-memory
scheduling in the same loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.beat import Scheduler

from tdauto.app import runtime_of
from tdauto.engine.executions import CONTROL_QUEUE, RUN_TASK, new_execution
from tdauto.engine.runtime import Runtime
from tdauto.models import ExecutionStatus, Task, Trigger
from tdauto.schedules import next_fire_ts

log = logging.getLogger(__name__)

DUE_BATCH = 500


def compute_next_ts(task: Task, after_ts: float, default_tz: str) -> float | None:
    """The task's first fire time strictly after ``after_ts`` (None: never again)."""
    if not task.enabled:
        return None
    return next_fire_ts(
        task.schedule,
        task.schedule_config,
        after_ts,
        default_tz=default_tz,
        anchor_ts=task.created_at.timestamp(),
        task_id=task.id,
    )


def dispatch_due(rt: Runtime, now_ts: float, limit: int = DUE_BATCH) -> int:
    """Fire every slot due at ``now_ts``; returns how many executions were sent.

    Free of Celery (it sends through ``rt.send``) so tests can drive it with a clock.
    A slot missed while no beat ran fires once now (the default misfire policy) and the
    task's next fire time is computed from now, not from the missed slot.
    """
    sent = 0
    for task_id, fire_ts in rt.store.due(now_ts, limit):
        task = rt.store.get_task(task_id)
        if task is None or not task.enabled:
            rt.store.set_next_run(task_id, None)
            continue
        execution = new_execution(task, rt.registry, Trigger.SCHEDULE, fire_ts=fire_ts)
        if rt.store.create_execution(execution):
            rt.send(RUN_TASK, [execution.id], CONTROL_QUEUE)
            sent += 1
            log.info("fired %s (%s) for slot %.0f", task.name, execution.id, fire_ts)
        else:
            existing = rt.store.get_execution(execution.id)
            if existing is not None and existing.status is ExecutionStatus.PENDING:
                rt.send(RUN_TASK, [execution.id], CONTROL_QUEUE)
                log.info("re-sent unsent slot %s of %s", execution.id, task.name)
        rt.store.set_last_run(task_id, fire_ts)
        rt.store.set_next_run(
            task_id, compute_next_ts(task, max(fire_ts, now_ts), rt.settings.timezone)
        )
    return sent


class StoreScheduler(Scheduler):
    """Celery beat scheduler over tdauto's store (see the module docstring)."""

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        self._rt: Runtime = runtime_of(app)
        kwargs.setdefault("max_interval", self._rt.settings.beat_tick_s)
        super().__init__(app, *args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Run due system entries, then due store tasks; return seconds until the next tick."""
        static_sleep = super().tick(*args, **kwargs)
        now = time.time()
        try:
            dispatch_due(self._rt, now)
            next_ts = self._rt.store.next_due_ts()
        except Exception:  # a store outage must not kill beat; it retries next tick
            log.exception("tdauto scheduler tick failed; retrying")
            return float(self.max_interval)
        store_sleep = self.max_interval if next_ts is None else max(0.0, next_ts - time.time())
        return float(min(static_sleep, store_sleep, self.max_interval))

    @property
    def info(self) -> str:
        where = "files" if self._rt.settings.local_mode else "redis"
        return f"tdauto store ({where})"
