"""System jobs of the engine that beat runs on a schedule (see ``beat_schedule.py``)."""

from __future__ import annotations

import logging
from datetime import timedelta

from tdauto.engine.executions import send_start
from tdauto.engine.runtime import Runtime
from tdauto.models import ExecutionStatus, utcnow

log = logging.getLogger(__name__)


def requeue_pending(rt: Runtime, older_than_s: float = 30.0, limit: int = 1000) -> int:
    """Re-send ``tdauto.run`` for executions PENDING longer than ``older_than_s``.

    ``tdauto.run`` moves an execution out of PENDING at most once, so a second message for
    one that did get through is a no-op. Returns how many were re-sent.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    sent = 0
    for ex in rt.store.list_executions(status=ExecutionStatus.PENDING, limit=limit):
        if ex.created_at <= cutoff:
            send_start(rt, ex)
            sent += 1
    if sent:
        log.warning("re-sent %d execution(s) left PENDING", sent)
    return sent
