"""The engine's timers, worked off by beat: due retries, expired leases, deadlines and
queue timeouts. This is the reaper that makes sure no execution stays RUNNING (or QUEUED)
forever.

- ``retries``: a failed attempt's retry, due after its backoff; sent when due.
- ``leases``: a running attempt's lease, renewed by its worker; an expired lease means the
  worker died: the action is re-queued (up to ``TDAUTO_LOST_REQUEUES`` times), then failed.
- ``deadlines``: a run's ``deadline``; a run still going then ends TIMED_OUT, and the watch of
  its running action stops the attempt.
- ``queue_timeouts``: an action sent with ``queue_timeout`` that no worker started in time
  ends TIMED_OUT.

Each member is taken (removed) before it is acted on, so two beats never act twice.
"""

from __future__ import annotations

import logging
import time

from tdauto.engine.executions import DEADLINES, QUEUE_TIMEOUTS, requeue_action
from tdauto.engine.lifecycle import complete
from tdauto.engine.runner import RETRIES, _final_failure
from tdauto.engine.runtime import Runtime
from tdauto.engine.watch import LEASES, parse_lease
from tdauto.models import ExecutionStatus
from tdauto.resources.ledger import release_dead, reservation_key, wake_waiters

log = logging.getLogger(__name__)
S = ExecutionStatus


def dispatch_retries(rt: Runtime, now_ts: float | None = None, limit: int = 500) -> int:
    """Send every retry whose delay has passed; returns how many were sent."""
    now_ts = time.time() if now_ts is None else now_ts
    sent = 0
    for member, _due in rt.store.timer_due(RETRIES, now_ts, limit):
        if rt.store.timer_take(RETRIES, member):
            execution_id, index = member.rsplit(":", 1)
            sent += requeue_action(rt, execution_id, int(index), S.RETRYING)
    return sent


def reap(rt: Runtime, now_ts: float | None = None, limit: int = 500) -> dict[str, int]:
    """Handle expired leases, passed deadlines and queue timeouts; returns counts."""
    now_ts = time.time() if now_ts is None else now_ts
    counts = {"requeued": 0, "lost": 0, "deadline": 0, "queue_timeout": 0}
    for member, _ in rt.store.timer_due(LEASES, now_ts, limit):
        if not rt.store.timer_take(LEASES, member):
            continue
        execution_id, index, attempt = parse_lease(member)
        ex = rt.store.get_execution(execution_id)
        if ex is None or ex.status.terminal or index >= len(ex.actions):
            continue
        run = ex.actions[index]
        if run.status is not S.RUNNING or run.attempts != attempt:
            continue
        rt.store.release_reservation(reservation_key(execution_id, index))
        if run.lost < rt.settings.lost_requeues:
            if requeue_action(rt, execution_id, index, S.RUNNING, lost=True):
                counts["requeued"] += 1
                log.warning("re-queued %s/%s: its worker on %s died", ex.id, index, run.host)
        else:
            reason = f"worker lost {run.lost + 1} times (lease expired on {run.host})"
            _final_failure(rt, execution_id, index, S.FAILED, reason, "lost")
            counts["lost"] += 1
    for execution_id, _ in rt.store.timer_due(DEADLINES, now_ts, limit):
        if rt.store.timer_take(DEADLINES, execution_id):
            ex = rt.store.get_execution(execution_id)
            if ex is not None and not ex.status.terminal:
                complete(rt, execution_id, S.TIMED_OUT, "the run's deadline passed")
                counts["deadline"] += 1
    for member, _ in rt.store.timer_due(QUEUE_TIMEOUTS, now_ts, limit):
        if not rt.store.timer_take(QUEUE_TIMEOUTS, member):
            continue
        execution_id, index_text = member.rsplit(":", 1)
        ex = rt.store.get_execution(execution_id)
        index = int(index_text)
        if ex is None or ex.status.terminal or ex.actions[index].status is not S.QUEUED:
            continue
        reason = f"no worker started it within queue_timeout={ex.queue_timeout_s:g}s"
        _final_failure(rt, execution_id, index, S.TIMED_OUT, reason, "queue_timeout")
        counts["queue_timeout"] += 1
    counts["released"] = release_dead(rt)
    counts["woken"] = wake_waiters(rt, 5)
    return counts
